/// A floating-point type the quantization kernels run on (`Float`, `Double`).
///
/// `roundedToInt32` rounds half to even with the "magic number" trick (add
/// 1.5 · 2^p, read the low bits): no branch, no trapping conversion, so the
/// loops that use it vectorize. It is exact for `|self| < 2^22`; callers clamp
/// first.
public protocol QuantizationScalar: BinaryFloatingPoint, SIMDScalar, Codable, Sendable {
    /// `self` rounded half to even, as an integer; requires `|self| < 2^22`.
    var roundedToInt32: Int32 { get }
    /// Whether `self` is neither NaN nor ±Inf, without a branch.
    var isFiniteValue: Bool { get }
}

extension Float: QuantizationScalar {
    @inlinable @inline(__always)
    public var roundedToInt32: Int32 {
        Int32(bitPattern: (self + 12_582_912).bitPattern) &- 0x4B40_0000
    }
    @inlinable @inline(__always)
    public var isFiniteValue: Bool { bitPattern & 0x7F80_0000 != 0x7F80_0000 }
}

extension Double: QuantizationScalar {
    @inlinable @inline(__always)
    public var roundedToInt32: Int32 {
        Int32(truncatingIfNeeded: Int64(bitPattern: (self + 6_755_399_441_055_744).bitPattern) &- 0x4338_0000_0000_0000)
    }
    @inlinable @inline(__always)
    public var isFiniteValue: Bool { bitPattern & 0x7FF0_0000_0000_0000 != 0x7FF0_0000_0000_0000 }
}
