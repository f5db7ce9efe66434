/// The portable path of the int8 product's activation quantizer: full blocks of
/// 16 columns in `SIMD16` code. On x86-64 the product runs
/// ``ActivationBlockAVX2`` instead, and the tests run this one too
/// (`ActivationQuantization(x:depth:batch:portable: true)`) to check that both
/// give the same bytes.
extension ActivationQuantization {
    /// Columns `first ..< first + 16`, sixteen lanes at a time: the same operations,
    /// in the same order, as ``quantizeBlockAVX2(x:depth:first:blockBase:)``.
    func quantizeBlockPortable(x: UnsafePointer<Float>, depth: Int, first: Int, blockBase: Int) -> String? {
        var low = SIMD16<Float>(), high = SIMD16<Float>(), poison = SIMD16<Float>()
        for k in 0 ..< depth {
            let v = UnsafeRawPointer(x + (k &* batch &+ first)).loadUnaligned(as: SIMD16<Float>.self)
            // (Swift's pointwiseMin/Max go lane by lane; compare-and-blend vectorizes.)
            low.replace(with: v, where: v .< low)
            high.replace(with: v, where: v .> high)
            poison += v * 0  // NaN once any value is NaN or ±Inf
        }
        guard poison == .zero else { return "x contains NaN or Inf" }
        // A constant from here on: the nested functions below capture it by value
        // (a captured `var` is boxed and every read pays an exclusivity check).
        let step = (high - low) / 127
        let s = step.replacing(with: 1, where: step .== 0)
        for c in 0 ..< 16 where !s[c].isFinite {
            return "x column \(first + c) spans too wide a range to quantize (overflow)"
        }
        // Round half to even by the 1.5 · 2^23 trick (exact for |v| < 2^22; here |v| <= 254),
        // clamp, and read the integer out of the mantissa of q + 2^23.
        let magic = SIMD16<Float>(repeating: 12_582_912), lowest = SIMD16<Float>(), highest = SIMD16<Float>(repeating: 127)
        @inline(__always) func clamp(_ v: SIMD16<Float>) -> SIMD16<Float> {
            v.replacing(with: lowest, where: v .< lowest).replacing(with: highest, where: v .> highest)
        }
        let z = clamp(((-low) / s + magic) - magic)
        @inline(__always) func codes(_ k: Int) -> SIMD16<UInt32> {
            let v = UnsafeRawPointer(x + (k &* batch &+ first)).loadUnaligned(as: SIMD16<Float>.self)
            let q = clamp(((v / s + magic) - magic) + z)
            return unsafeBitCast(q + SIMD16(repeating: 8_388_608), to: SIMD16<UInt32>.self) & 0xFF
        }
        var sums = SIMD16<Int64>()
        var partial = SIMD16<UInt32>()
        // A group of four depths is one 64-byte record: column c's four codes are the
        // little-endian bytes of word c (the layout of `packedBlock`), so it is built
        // with shifts and stored whole instead of byte by byte.
        for quad in 0 ..< quads {
            let k = quad &* 4
            let c0 = codes(k), c1 = codes(k &+ 1), c2 = codes(k &+ 2), c3 = codes(k &+ 3)
            partial &+= (c0 &+ c1) &+ (c2 &+ c3)
            // 4 · 127 per record: flush to Int64 long before a UInt32 lane could wrap.
            if quad & 0xFFFF == 0xFFFF { sums &+= SIMD16<Int64>(truncatingIfNeeded: partial); partial = .zero }
            let word = c0 | (c1 &<< 8) | (c2 &<< 16) | (c3 &<< 24)
            (packed + (blockBase &+ quad &* 64)).storeBytes(of: word, as: SIMD16<UInt32>.self)
        }
        for k in (quads &* 4) ..< depth {
            let tailCodes = codes(k)
            partial &+= tailCodes
            let row = (k &- quads &* 4) &* paddedBatch &+ first
            for c in 0 ..< 16 { tail[row &+ c] = Int32(truncatingIfNeeded: tailCodes[c]) }
        }
        sums &+= SIMD16<Int64>(truncatingIfNeeded: partial)
        for c in 0 ..< 16 {
            scales[first &+ c] = s[c]
            zeroPoints[first &+ c] = Int32(z[c])
            columnSums[first &+ c] = sums[c]
        }
        return nil
    }
}
