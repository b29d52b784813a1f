//! splitmix64 (Steele, Lea and Flood, 2014), the one 64-bit mixer of the core: the registry
//! spreads an id's CRC-32 over 64 bits with it, and the agent kernels derive their random draws
//! from it. The Python twins compute the same function, so both backends agree bit for bit.

/// The output of one splitmix64 step from state `x`: a bijection of the 64-bit integers that
/// changes about half the output bits for any one input bit.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::splitmix64;

    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs of the reference generator seeded with 0 (state += gamma per step).
        let gamma = 0x9E37_79B9_7F4A_7C15u64;
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(gamma), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(gamma.wrapping_mul(2)), 0x06C4_5D18_8009_454F);
    }
}
