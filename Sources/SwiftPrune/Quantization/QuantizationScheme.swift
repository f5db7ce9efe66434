/// The integer grid of a quantizer: its bit width and whether it is
/// symmetric (TFLite int8 weight convention) or affine.
///
/// - symmetric: integers in `[-qmax, qmax]` with `qmax = 2^(bits-1) - 1`,
///   zero point 0, stored as `Int8`;
/// - affine: integers in `[0, 2^bits - 1]` with a zero point in that range,
///   stored as `UInt8`.
public struct QuantizationScheme: Equatable, Sendable {
    public let bits: Int
    public let symmetric: Bool

    /// - Throws: ``SwiftPruneError`` unless `2 <= bits <= 8`.
    public init(bits: Int, symmetric: Bool) throws {
        guard bits >= 2 && bits <= 8 else {
            throw SwiftPruneError.value("bits must be in 2..8, got \(bits)")
        }
        self.bits = bits
        self.symmetric = symmetric
    }

    /// The smallest integer of the grid.
    public var qmin: Int32 { symmetric ? -(Int32(1) << (bits - 1)) + 1 : 0 }
    /// The largest integer of the grid.
    public var qmax: Int32 { symmetric ? (Int32(1) << (bits - 1)) - 1 : (Int32(1) << bits) - 1 }
    /// The number of steps between `qmin` and `qmax` (the divisor of the range).
    public var levels: Int32 { symmetric ? (Int32(1) << (bits - 1)) - 1 : (Int32(1) << bits) - 1 }

    /// The scale and zero point for the clipping range `[lo, hi]` (computed in
    /// `Double`, the scale then rounded to `Float`):
    ///
    /// - symmetric: `scale = max(|lo|, |hi|) / qmax`, `zeroPoint = 0`;
    /// - affine: the range is widened to include 0, `scale = (hi - lo) /
    ///   (2^bits - 1)`, `zeroPoint = clamp(round_half_even(-lo / scale), 0,
    ///   2^bits - 1)` with the division done in `S` on the `Float` scale.
    ///
    /// An empty range (all zeros) gets `scale = 1`; a nonzero range whose
    /// scale underflows to 0 in `Float` gets the least nonzero `Float`.
    @inlinable
    public func parameters<S: QuantizationScalar>(lo: S, hi: S, as: S.Type = S.self) -> (scale: Float, zeroPoint: Int32) {
        let l = Double(lo), h = Double(hi)
        var scale: Float
        var zeroPoint: Int32 = 0
        if symmetric {
            let m = Swift.max(Swift.abs(l), Swift.abs(h))
            scale = m == 0 ? 1 : Float(m / Double(levels))
            if scale == 0 { scale = .leastNonzeroMagnitude }
        } else {
            let lo0 = Swift.min(l, 0), hi0 = Swift.max(h, 0)
            let width = hi0 - lo0
            scale = width == 0 ? 1 : Float(width / Double(levels))
            if scale == 0 { scale = .leastNonzeroMagnitude }
            let z = (S(-lo0) / S(scale))
            // Clamp before rounding (the bounds are integers, so this is the same).
            let clamped = Swift.min(Swift.max(z, 0), S(levels))
            zeroPoint = clamped.roundedToInt32
        }
        return (scale, zeroPoint)
    }
}
