/// Conversions to the 16-bit float formats, returned as bit patterns:
/// IEEE float16 (1-5-10) and bfloat16 (1-8-7). Rounding is to nearest, ties
/// to even, with subnormals, overflow to ±Inf, ±Inf kept and NaN kept as NaN:
///
/// - float16: the sign and the top 10 payload bits are kept; a payload that
///   would become 0 becomes 1 (so NaN stays NaN) — exactly NumPy's
///   `astype(np.float16)`, from float32 and (directly, with one rounding)
///   from float64;
/// - bfloat16: the sign and top payload bits are kept and the quiet bit is
///   set (0x7FC0 for the default NaN). From float64 the value is rounded once,
///   directly (no double rounding through float32).
public enum HalfPrecisionCast {
    /// Rounds the finite or infinite/NaN value with the given source layout to
    /// a narrower format. `sign`, `exponent` (biased) and `mantissa` are the
    /// source fields; the result holds the target's bits.
    @inline(__always)
    static func narrow(
        sign: UInt64, exponent: Int, mantissa: UInt64,
        sourceExponentMax: Int, sourceBias: Int, sourceMantissaBits: Int,
        targetExponentMax: Int, targetBias: Int, targetMantissaBits: Int, quietNaN: Bool
    ) -> UInt16 {
        let signBit = UInt16(truncatingIfNeeded: sign) << 15
        let infinity = UInt16(targetExponentMax) << targetMantissaBits
        if exponent == sourceExponentMax {
            if mantissa == 0 { return signBit | infinity }
            var payload = UInt16(truncatingIfNeeded: mantissa >> (sourceMantissaBits - targetMantissaBits))
            if quietNaN { payload |= 1 << (targetMantissaBits - 1) }
            if payload == 0 { payload = 1 }
            return signBit | infinity | payload
        }
        // value = significand * 2^(e - sourceBias - sourceMantissaBits)
        let significand = exponent == 0 ? mantissa : mantissa | (1 << sourceMantissaBits)
        if significand == 0 { return signBit }
        let e = (exponent == 0 ? 1 : exponent) - sourceBias          // unbiased exponent of the leading bit position
        // Target exponent field 1 holds 2^(1 - targetBias); below it, subnormals share that scale.
        var shift = sourceMantissaBits - targetMantissaBits
        var field = e + targetBias                                    // target biased exponent if normal
        if field < 1 {
            shift += 1 - field
            field = 1
        }
        if field >= targetExponentMax { return signBit | infinity }
        let rounded: UInt64
        if shift >= 64 {
            rounded = 0
        } else {
            let kept = significand >> shift
            let rest = significand & ((1 << shift) - 1)
            let half: UInt64 = 1 << (shift - 1)
            rounded = kept + ((rest > half || (rest == half && kept & 1 == 1)) ? 1 : 0)
        }
        // `rounded` carries the implicit bit (when normal): adding it to
        // (field - 1) << mantissaBits gives the right exponent, carries included.
        let normal = rounded >> targetMantissaBits != 0
        let bits = normal ? (UInt64(field - 1) << targetMantissaBits) + rounded : rounded
        if bits >= UInt64(infinity) { return signBit | infinity }
        return signBit | UInt16(truncatingIfNeeded: bits)
    }

    @inline(__always)
    static func half(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        #if arch(x86_64) || arch(arm64)
        // The hardware conversion (F16C) rounds to nearest even like IEEE;
        // only NaN payloads follow NumPy's rule instead of being quieted.
        let converted = Float16(x).bitPattern
        let payload = UInt16(truncatingIfNeeded: (b & 0x7F_FFFF) >> 13)
        let nan = UInt16(truncatingIfNeeded: (b >> 16) & 0x8000) | 0x7C00 | (payload == 0 ? 1 : payload)
        return b & 0x7FFF_FFFF > 0x7F80_0000 ? nan : converted
        #else
        let wide = UInt64(b)
        return narrow(sign: wide >> 31, exponent: Int((wide >> 23) & 0xFF), mantissa: wide & 0x7F_FFFF,
                      sourceExponentMax: 0xFF, sourceBias: 127, sourceMantissaBits: 23,
                      targetExponentMax: 0x1F, targetBias: 15, targetMantissaBits: 10, quietNaN: false)
        #endif
    }

    @inline(__always)
    static func half(_ x: Double) -> UInt16 {
        let b = x.bitPattern
        return narrow(sign: b >> 63, exponent: Int((b >> 52) & 0x7FF), mantissa: b & 0xF_FFFF_FFFF_FFFF,
                      sourceExponentMax: 0x7FF, sourceBias: 1023, sourceMantissaBits: 52,
                      targetExponentMax: 0x1F, targetBias: 15, targetMantissaBits: 10, quietNaN: false)
    }

    @inline(__always)
    static func brain(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        let nan = UInt16(truncatingIfNeeded: b >> 16) | 0x0040
        let rounded = UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
        return b & 0x7FFF_FFFF > 0x7F80_0000 ? nan : rounded
    }

    @inline(__always)
    static func brain(_ x: Double) -> UInt16 {
        let b = x.bitPattern
        return narrow(sign: b >> 63, exponent: Int((b >> 52) & 0x7FF), mantissa: b & 0xF_FFFF_FFFF_FFFF,
                      sourceExponentMax: 0x7FF, sourceBias: 1023, sourceMantissaBits: 52,
                      targetExponentMax: 0xFF, targetBias: 127, targetMantissaBits: 7, quietNaN: true)
    }

    @inline(__always)
    static func map<S>(_ x: UnsafeBufferPointer<S>, _ out: UnsafeMutableBufferPointer<UInt16>,
                       _ convert: (S) -> UInt16) throws {
        guard x.count == out.count else {
            throw SwiftPruneError.value("output has \(out.count) elements, input has \(x.count)")
        }
        guard x.count > 0 else { return }
        let src = x.baseAddress!, dst = out.baseAddress!
        let workers = Threading.workerCount(for: x.count, minimumPerWorker: 1 << 16)
        parallelFor(workers: workers) { worker in
            for i in partitionRange(x.count, parts: workers, index: worker) { dst[i] = convert(src[i]) }
        }
    }

    /// float32 → float16 bit patterns (NumPy's `astype(np.float16)`).
    public static func toFloat16(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<UInt16>) throws {
        try map(x, out) { half($0) }
    }
    /// float64 → float16 bit patterns, rounded once.
    public static func toFloat16(_ x: UnsafeBufferPointer<Double>, into out: UnsafeMutableBufferPointer<UInt16>) throws {
        try map(x, out) { half($0) }
    }
    /// float32 → bfloat16 bit patterns.
    public static func toBFloat16(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<UInt16>) throws {
        try map(x, out) { brain($0) }
    }
    /// float64 → bfloat16 bit patterns, rounded once.
    public static func toBFloat16(_ x: UnsafeBufferPointer<Double>, into out: UnsafeMutableBufferPointer<UInt16>) throws {
        try map(x, out) { brain($0) }
    }
}

extension HalfPrecisionCast {
    /// The float16 bit patterns of `tensor` (same shape).
    public static func float16<S: QuantizationScalar>(_ tensor: Tensor<S>) throws -> Tensor<UInt16> {
        try convert(tensor, bfloat: false)
    }

    /// The bfloat16 bit patterns of `tensor` (same shape).
    public static func bfloat16<S: QuantizationScalar>(_ tensor: Tensor<S>) throws -> Tensor<UInt16> {
        try convert(tensor, bfloat: true)
    }

    static func convert<S: QuantizationScalar>(_ tensor: Tensor<S>, bfloat: Bool) throws -> Tensor<UInt16> {
        try Tensor<UInt16>.filling(shape: tensor.shape) { out in
            try tensor.scalars.withUnsafeBufferPointer { x in
                if let f = x as? UnsafeBufferPointer<Float> {
                    bfloat ? try toBFloat16(f, into: out) : try toFloat16(f, into: out)
                } else {
                    let d = x.map(Double.init)
                    try d.withUnsafeBufferPointer { bfloat ? try toBFloat16($0, into: out) : try toFloat16($0, into: out) }
                }
            }
        }
    }
}
