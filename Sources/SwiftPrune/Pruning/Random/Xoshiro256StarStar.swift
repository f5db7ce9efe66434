/// xoshiro256** (Blackman and Vigna, 2018), the seeded generator behind
/// SwiftPrune's random pruning. The 256-bit state is filled from the 64-bit
/// seed by SplitMix64, as the authors recommend, so every seed (0 included)
/// gives a well-mixed state. The sequence for a given seed is fixed forever:
/// masks are reproducible across platforms and releases.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    private var s0, s1, s2, s3: UInt64

    /// A generator whose sequence is determined by `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// The next 64 random bits.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = Self.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = Self.rotl(s3, 45)
        return result
    }

    /// A uniform integer in `0 ..< bound` (`bound > 0`) by Lemire's
    /// multiply-and-reject method: exact, and fixed for a given state.
    @inline(__always)
    public mutating func uniform(below bound: UInt64) -> UInt64 {
        var product = bound.multipliedFullWidth(by: next())
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = bound.multipliedFullWidth(by: next()) }
        }
        return product.high
    }
}
