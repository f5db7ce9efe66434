/// A tensor stored as small integers plus per-group scales and zero points:
/// `w ≈ (q - zeroPoint) * scale` (see ``quantize(_:bits:symmetric:axis:groupSize:method:)``).
public struct QuantizedTensor: Equatable, Sendable {
    /// Which elements share a scale, and the tensor's shape.
    public let layout: QuantizationLayout
    public let scheme: QuantizationScheme
    /// One byte per element in C order: `Int8` bit patterns (symmetric) or
    /// `UInt8` values (affine).
    public let storage: [UInt8]
    /// One scale per group, in C order of ``QuantizationLayout/scaleShape``.
    public let scales: [Float]
    /// One zero point per group (all 0 when symmetric).
    public let zeroPoints: [Int32]

    /// Assembles a quantized tensor from its parts, checking their sizes and ranges.
    public init(layout: QuantizationLayout, scheme: QuantizationScheme, storage: [UInt8],
                scales: [Float], zeroPoints: [Int32]) throws {
        guard storage.count == layout.count, scales.count == layout.groupCount,
              zeroPoints.count == layout.groupCount else {
            throw SwiftPruneError.value("quantized tensor parts do not match shape \(layout.shape)")
        }
        guard scales.allSatisfy({ $0 > 0 && $0.isFinite }),
              zeroPoints.allSatisfy({ $0 >= scheme.qmin && $0 <= scheme.qmax }) else {
            throw SwiftPruneError.value("scales must be positive and finite, zero points on the integer grid")
        }
        self.layout = layout
        self.scheme = scheme
        self.storage = storage
        self.scales = scales
        self.zeroPoints = zeroPoints
    }

    public var shape: [Int] { layout.shape }

    /// The integers, widened to `Int32`.
    public var integers: [Int32] {
        scheme.symmetric ? storage.map { Int32(Int8(bitPattern: $0)) } : storage.map { Int32($0) }
    }

    /// `(q - zeroPoint) * scale` in `Float`.
    public func dequantized() throws -> Tensor<Float> {
        try Tensor<Float>.filling(shape: shape) { out in
            try scales.withUnsafeBufferPointer { s in
                try zeroPoints.withUnsafeBufferPointer { z in
                    try storage.withUnsafeBufferPointer { raw in
                        if scheme.symmetric {
                            try raw.withMemoryRebound(to: Int8.self) {
                                try dequantizeValues($0, layout: layout, scales: s, zeroPoints: z, into: out)
                            }
                        } else {
                            try dequantizeValues(raw, layout: layout, scales: s, zeroPoints: z, into: out)
                        }
                    }
                }
            }
        }
    }

    /// The values as stored on disk: a little-endian stream of `bits` bits per
    /// value (``BitPacking``; two per byte, low nibble first, for 4 bits).
    public func packed() throws -> [UInt8] {
        guard scheme.bits < 8 else { return storage }
        return try storage.withUnsafeBufferPointer { values in
            try [UInt8](unsafeUninitializedCapacity: BitPacking.packedCount(values.count, bits: scheme.bits)) { out, n in
                try BitPacking.pack(values, bits: scheme.bits, into: out)
                n = out.count
            }
        }
    }

    /// The bytes of the packed values (`ceil(count * bits / 8)`) plus the
    /// scales (4 bytes each) and, when affine, the zero points (1 byte each).
    public var byteCount: Int {
        BitPacking.packedCount(storage.count, bits: scheme.bits) + 4 * scales.count + (scheme.symmetric ? 0 : zeroPoints.count)
    }
}

/// Quantizes `weights` to `bits`-bit integers.
///
/// - symmetric: integers in `[-qmax, qmax]`, `qmax = 2^(bits-1) - 1`,
///   `scale = max|w| / qmax`, zero point 0 (TFLite's int8 weight convention);
/// - affine: integers in `[0, 2^bits - 1]`, the range widened to include 0,
///   `scale = (max - min) / (2^bits - 1)`, `zeroPoint = clamp(round(-min / scale))`.
///
/// `q = clamp(round_half_even(w / scale) + zeroPoint)`; an all-zero group
/// gets scale 1. `axis == nil`: one scale; `axis`: one per index along it;
/// `groupSize` (2-D weights, with `axis`): groups of that many consecutive
/// entries along the other dimension.
/// - Throws: ``SwiftPruneError`` for bits outside 2...8, a bad axis or group
///   size, NaN/Inf weights.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func quantize<S: QuantizationScalar>(
    _ weights: Tensor<S>, bits: Int = 8, symmetric: Bool = true, axis: Int? = nil, groupSize: Int? = nil,
    method: CalibrationMethod = .minmax
) throws -> QuantizedTensor {
    let scheme = try QuantizationScheme(bits: bits, symmetric: symmetric)
    let layout = try QuantizationLayout(shape: weights.shape, axis: axis, groupSize: groupSize)
    return try weights.scalars.withUnsafeBufferPointer { x in
        var scales: [Float] = [], zeroPoints: [Int32] = []
        let storage = try [UInt8](unsafeUninitializedCapacity: x.count) { out, n in
            if symmetric {
                (scales, zeroPoints) = try out.withMemoryRebound(to: Int8.self) {
                    try quantizeBuffer(x, layout: layout, scheme: scheme, method: method, into: $0)
                }
            } else {
                (scales, zeroPoints) = try quantizeBuffer(x, layout: layout, scheme: scheme, method: method, into: out)
            }
            n = x.count
        }
        return try QuantizedTensor(layout: layout, scheme: scheme, storage: storage, scales: scales, zeroPoints: zeroPoints)
    }
}
