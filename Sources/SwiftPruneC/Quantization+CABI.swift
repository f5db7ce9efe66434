import CSwiftPrune
import SwiftPrune

/// A C shape (`ndim` extents) as a Swift array.
private func quantizationShape(_ shape: UnsafePointer<Int64>?, _ ndim: Int64) throws -> [Int] {
    guard ndim >= 0 && ndim <= 64 else { throw SwiftPruneError.value("ndim must be in 0...64, got \(ndim)") }
    if ndim == 0 { return [] }
    guard let shape else { throw SwiftPruneError.value("shape is NULL") }
    return (0 ..< Int(ndim)).map { Int(shape[$0]) }
}

private func quantizationLayout(
    _ shape: UnsafePointer<Int64>?, _ ndim: Int64, _ hasAxis: Bool, _ axis: Int64, _ groupSize: Int64
) throws -> QuantizationLayout {
    guard groupSize >= 0 else { throw SwiftPruneError.value("group_size must be >= 1, got \(groupSize)") }
    return try QuantizationLayout(shape: quantizationShape(shape, ndim), axis: hasAxis ? Int(axis) : nil,
                                  groupSize: groupSize == 0 ? nil : Int(groupSize))
}

private func calibrationMethod(_ method: Int32, _ percentile: Double) throws -> CalibrationMethod {
    switch method {
    case SP_CALIBRATION_MINMAX: return .minmax
    case SP_CALIBRATION_PERCENTILE: return .percentile(percentile)
    case SP_CALIBRATION_MSE: return .mse
    default: throw SwiftPruneError.value("unknown calibration method \(method)")
    }
}

@_cdecl("sp_quant_scale_shape")
public func spQuantScaleShape(
    _ shape: UnsafePointer<Int64>?, _ ndim: Int64, _ hasAxis: Bool, _ axis: Int64, _ groupSize: Int64,
    _ scaleShapeOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        let layout = try quantizationLayout(shape, ndim, hasAxis, axis, groupSize)
        let out = try outputBuffer(scaleShapeOut, ndim, "scale_shape_out")
        for (i, extent) in layout.scaleShape.enumerated() { out[i] = Int64(extent) }
    }
}

private func quantizeExport<S: QuantizationScalar>(
    _ w: UnsafePointer<S>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64, _ bits: Int64, _ symmetric: Bool,
    _ hasAxis: Bool, _ axis: Int64, _ groupSize: Int64, _ method: Int32, _ percentile: Double,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) throws {
    let scheme = try QuantizationScheme(bits: Int(bits), symmetric: symmetric)
    let layout = try quantizationLayout(shape, ndim, hasAxis, axis, groupSize)
    let calibration = try calibrationMethod(method, percentile)
    guard nScales == Int64(layout.groupCount) else {
        throw SwiftPruneError.value("n_scales is \(nScales), the layout has \(layout.groupCount) groups")
    }
    let n = Int64(layout.count)
    let x = try inputBuffer(w, n, "w")
    let values = try outputBuffer(valuesOut?.assumingMemoryBound(to: UInt8.self), n, "values_out")
    let scales = try outputBuffer(scaleOut, nScales, "scale_out")
    let zeroPoints = try outputBuffer(zeroPointOut?.assumingMemoryBound(to: UInt8.self), nScales, "zero_point_out")
    let (s, z) = try Calibration.parameters(x, layout: layout, scheme: scheme, method: calibration)
    if symmetric {
        try values.withMemoryRebound(to: Int8.self) {
            try quantizeValues(x, layout: layout, scheme: scheme, scales: s, zeroPoints: z, into: $0)
        }
    } else {
        try quantizeValues(x, layout: layout, scheme: scheme, scales: s, zeroPoints: z, into: values)
    }
    for g in 0 ..< layout.groupCount {
        scales[g] = s[g]
        zeroPoints[g] = UInt8(truncatingIfNeeded: z[g])
    }
}

@_cdecl("sp_quant_quantize_f32")
public func spQuantQuantizeF32(
    _ w: UnsafePointer<Float>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64, _ bits: Int64, _ symmetric: Bool,
    _ hasAxis: Bool, _ axis: Int64, _ groupSize: Int64, _ method: Int32, _ percentile: Double,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) -> sp_status {
    withStatus {
        try quantizeExport(w, shape, ndim, bits, symmetric, hasAxis, axis, groupSize, method, percentile,
                           valuesOut, scaleOut, zeroPointOut, nScales)
    }
}

@_cdecl("sp_quant_quantize_f64")
public func spQuantQuantizeF64(
    _ w: UnsafePointer<Double>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64, _ bits: Int64, _ symmetric: Bool,
    _ hasAxis: Bool, _ axis: Int64, _ groupSize: Int64, _ method: Int32, _ percentile: Double,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) -> sp_status {
    withStatus {
        try quantizeExport(w, shape, ndim, bits, symmetric, hasAxis, axis, groupSize, method, percentile,
                           valuesOut, scaleOut, zeroPointOut, nScales)
    }
}

@_cdecl("sp_quant_dequantize")
public func spQuantDequantize(
    _ values: UnsafeRawPointer?, _ symmetric: Bool, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ hasAxis: Bool, _ axis: Int64, _ groupSize: Int64,
    _ scale: UnsafePointer<Float>?, _ zeroPoint: UnsafeRawPointer?, _ nScales: Int64,
    _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let layout = try quantizationLayout(shape, ndim, hasAxis, axis, groupSize)
        guard nScales == Int64(layout.groupCount) else {
            throw SwiftPruneError.value("n_scales is \(nScales), the layout has \(layout.groupCount) groups")
        }
        let n = Int64(layout.count)
        let raw = try inputBuffer(values?.assumingMemoryBound(to: UInt8.self), n, "values")
        let scales = try inputBuffer(scale, nScales, "scale")
        let zeroRaw = try inputBuffer(zeroPoint?.assumingMemoryBound(to: UInt8.self), nScales, "zero_point")
        let output = try outputBuffer(out, n, "out")
        let zeros: [Int32] = symmetric ? zeroRaw.map { Int32(Int8(bitPattern: $0)) } : zeroRaw.map { Int32($0) }
        try zeros.withUnsafeBufferPointer { z in
            if symmetric {
                try raw.withMemoryRebound(to: Int8.self) {
                    try dequantizeValues($0, layout: layout, scales: scales, zeroPoints: z, into: output)
                }
            } else {
                try dequantizeValues(raw, layout: layout, scales: scales, zeroPoints: z, into: output)
            }
        }
    }
}

@_cdecl("sp_quant_pack_nibbles")
public func spQuantPackNibbles(
    _ values: UnsafePointer<UInt8>?, _ n: Int64, _ packedOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        let input = try inputBuffer(values, n, "values")
        try NibblePacking.pack(input, into: outputBuffer(packedOut, Int64(NibblePacking.packedCount(Int(n))), "packed_out"))
    }
}

@_cdecl("sp_quant_unpack_nibbles")
public func spQuantUnpackNibbles(
    _ packed: UnsafePointer<UInt8>?, _ n: Int64, _ isSigned: Bool, _ valuesOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        let output = try outputBuffer(valuesOut, n, "values_out")
        try NibblePacking.unpack(inputBuffer(packed, Int64(NibblePacking.packedCount(Int(n))), "packed"),
                                 signed: isSigned, into: output)
    }
}

@_cdecl("sp_cast_float16_f32")
public func spCastFloat16F32(_ x: UnsafePointer<Float>?, _ n: Int64, _ out: UnsafeMutablePointer<UInt16>?) -> sp_status {
    withStatus { try HalfPrecisionCast.toFloat16(inputBuffer(x, n, "x"), into: outputBuffer(out, n, "out")) }
}

@_cdecl("sp_cast_float16_f64")
public func spCastFloat16F64(_ x: UnsafePointer<Double>?, _ n: Int64, _ out: UnsafeMutablePointer<UInt16>?) -> sp_status {
    withStatus { try HalfPrecisionCast.toFloat16(inputBuffer(x, n, "x"), into: outputBuffer(out, n, "out")) }
}

@_cdecl("sp_cast_bfloat16_f32")
public func spCastBFloat16F32(_ x: UnsafePointer<Float>?, _ n: Int64, _ out: UnsafeMutablePointer<UInt16>?) -> sp_status {
    withStatus { try HalfPrecisionCast.toBFloat16(inputBuffer(x, n, "x"), into: outputBuffer(out, n, "out")) }
}

@_cdecl("sp_cast_bfloat16_f64")
public func spCastBFloat16F64(_ x: UnsafePointer<Double>?, _ n: Int64, _ out: UnsafeMutablePointer<UInt16>?) -> sp_status {
    withStatus { try HalfPrecisionCast.toBFloat16(inputBuffer(x, n, "x"), into: outputBuffer(out, n, "out")) }
}

func checkQuantizationSignatures() {
    var scaleShape = sp_quant_scale_shape; implements(&scaleShape, spQuantScaleShape)
    var quantizeF32 = sp_quant_quantize_f32; implements(&quantizeF32, spQuantQuantizeF32)
    var quantizeF64 = sp_quant_quantize_f64; implements(&quantizeF64, spQuantQuantizeF64)
    var dequantize = sp_quant_dequantize; implements(&dequantize, spQuantDequantize)
    var pack = sp_quant_pack_nibbles; implements(&pack, spQuantPackNibbles)
    var unpack = sp_quant_unpack_nibbles; implements(&unpack, spQuantUnpackNibbles)
    var halfF32 = sp_cast_float16_f32; implements(&halfF32, spCastFloat16F32)
    var halfF64 = sp_cast_float16_f64; implements(&halfF64, spCastFloat16F64)
    var brainF32 = sp_cast_bfloat16_f32; implements(&brainF32, spCastBFloat16F32)
    var brainF64 = sp_cast_bfloat16_f64; implements(&brainF64, spCastBFloat16F64)
}
