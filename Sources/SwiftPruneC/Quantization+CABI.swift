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
    let (s, z) = symmetric
        ? try values.withMemoryRebound(to: Int8.self) {
            try quantizeBuffer(x, layout: layout, scheme: scheme, method: calibration, into: $0)
        }
        : try quantizeBuffer(x, layout: layout, scheme: scheme, method: calibration, into: values)
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

@_cdecl("sp_quant_pack_bits")
public func spQuantPackBits(
    _ values: UnsafePointer<UInt8>?, _ n: Int64, _ bits: Int32, _ packedOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        guard (1 ... 8).contains(bits) else { throw SwiftPruneError.value("bits must be in 1...8, got \(bits)") }
        let input = try inputBuffer(values, n, "values")
        let need = Int64(BitPacking.packedCount(Int(n), bits: Int(bits)))
        try BitPacking.pack(input, bits: Int(bits), into: outputBuffer(packedOut, need, "packed_out"))
    }
}

@_cdecl("sp_quant_unpack_bits")
public func spQuantUnpackBits(
    _ packed: UnsafePointer<UInt8>?, _ n: Int64, _ bits: Int32, _ isSigned: Bool, _ valuesOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        guard (1 ... 8).contains(bits) else { throw SwiftPruneError.value("bits must be in 1...8, got \(bits)") }
        let output = try outputBuffer(valuesOut, n, "values_out")
        let need = Int64(BitPacking.packedCount(Int(n), bits: Int(bits)))
        try BitPacking.unpack(inputBuffer(packed, need, "packed"), bits: Int(bits), signed: isSigned, into: output)
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

@_cdecl("sp_cluster_fit_f32")
public func spClusterFitF32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ nClusters: Int64, _ initialization: Int32, _ maxIter: Int64,
    _ seed: UInt64, _ centroidsOut: UnsafeMutablePointer<Float>?, _ iterationsOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        guard let method = ClusterInitialization(rawValue: initialization) else {
            throw SwiftPruneError.value("unknown initialization \(initialization)")
        }
        guard nClusters >= 1 && nClusters <= 65536 else {
            throw SwiftPruneError.value("n_clusters must be in 1..65536, got \(nClusters)")
        }
        let centroids = try outputBuffer(centroidsOut, nClusters, "centroids_out")
        let fit = try KMeans1D(inputBuffer(w, n, "w"), clusters: Int(nClusters), initialization: method,
                               maxIterations: Int(clamping: maxIter), seed: seed)
        for (i, c) in fit.centroids.enumerated() { centroids[i] = c }
        iterationsOut?.pointee = Int64(fit.iterations)
    }
}

@_cdecl("sp_cluster_assign_u8_f32")
public func spClusterAssignU8F32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ centroids: UnsafePointer<Float>?, _ nClusters: Int64,
    _ indicesOut: UnsafeMutablePointer<UInt8>?
) -> sp_status {
    withStatus {
        try Codebook.assign(inputBuffer(w, n, "w"), centroids: inputBuffer(centroids, nClusters, "centroids"),
                            into: outputBuffer(indicesOut, n, "indices_out"))
    }
}

@_cdecl("sp_cluster_assign_u16_f32")
public func spClusterAssignU16F32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ centroids: UnsafePointer<Float>?, _ nClusters: Int64,
    _ indicesOut: UnsafeMutablePointer<UInt16>?
) -> sp_status {
    withStatus {
        try Codebook.assign(inputBuffer(w, n, "w"), centroids: inputBuffer(centroids, nClusters, "centroids"),
                            into: outputBuffer(indicesOut, n, "indices_out"))
    }
}

@_cdecl("sp_cluster_lookup_u8")
public func spClusterLookupU8(
    _ indices: UnsafePointer<UInt8>?, _ n: Int64, _ centroids: UnsafePointer<Float>?, _ nClusters: Int64,
    _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        try Codebook.lookup(inputBuffer(indices, n, "indices"), centroids: inputBuffer(centroids, nClusters, "centroids"),
                            into: outputBuffer(out, n, "out"))
    }
}

@_cdecl("sp_cluster_lookup_u16")
public func spClusterLookupU16(
    _ indices: UnsafePointer<UInt16>?, _ n: Int64, _ centroids: UnsafePointer<Float>?, _ nClusters: Int64,
    _ out: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        try Codebook.lookup(inputBuffer(indices, n, "indices"), centroids: inputBuffer(centroids, nClusters, "centroids"),
                            into: outputBuffer(out, n, "out"))
    }
}

@_cdecl("sp_quant_gptq_f64")
public func spQuantGptqF64(
    _ w: UnsafePointer<Double>?, _ rows: Int64, _ cols: Int64, _ x: UnsafePointer<Double>?, _ samples: Int64,
    _ bits: Int64, _ symmetric: Bool, _ groupSize: Int64, _ damp: Double,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) -> sp_status {
    withStatus {
        guard rows >= 0, cols >= 0, samples >= 0, groupSize >= 0 else {
            throw SwiftPruneError.value("rows, cols, samples and group_size must be >= 0")
        }
        let (wCount, o1) = rows.multipliedReportingOverflow(by: cols)
        let (xCount, o2) = samples.multipliedReportingOverflow(by: cols)
        guard !o1, !o2 else { throw SwiftPruneError(.outOfMemory, "sizes overflow") }
        let scheme = try QuantizationScheme(bits: Int(bits), symmetric: symmetric)
        let group = groupSize == 0 ? nil : Int(groupSize)
        let outputs = try RowQuantizationOutputs(rows: rows, cols: cols, groupSize: group, valuesOut: valuesOut,
                                                 scaleOut: scaleOut, zeroPointOut: zeroPointOut, nScales: nScales)
        outputs.store(try GPTQ.quantize(
            weights: inputBuffer(w, wCount, "w"), rows: Int(rows), cols: Int(cols),
            activations: inputBuffer(x, xCount, "x"), samples: Int(samples), scheme: scheme, groupSize: group,
            damp: damp))
    }
}

@_cdecl("sp_quant_gptq_hessian_f64")
public func spQuantGptqHessianF64(
    _ w: UnsafePointer<Double>?, _ rows: Int64, _ cols: Int64, _ h: UnsafeMutablePointer<Double>?,
    _ bits: Int64, _ symmetric: Bool, _ groupSize: Int64, _ damp: Double, _ blockSize: Int64,
    _ actOrder: Bool, _ staticGroups: Bool, _ mseGrid: Int64,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) -> sp_status {
    withStatus {
        let (count, scheme, options, outputs) = try gptqHessianExport(
            rows: rows, cols: cols, bits: bits, symmetric: symmetric, groupSize: groupSize, damp: damp,
            blockSize: blockSize, actOrder: actOrder, staticGroups: staticGroups, mseGrid: mseGrid,
            valuesOut: valuesOut, scaleOut: scaleOut, zeroPointOut: zeroPointOut, nScales: nScales)
        outputs.store(try GPTQ.quantize(
            weights: inputBuffer(w, count.weights, "w"), rows: Int(rows), cols: Int(cols),
            hessian: outputBuffer(h, count.hessian, "h"), scheme: scheme, options: options))
    }
}

@_cdecl("sp_quant_gptq_hessian_f32")
public func spQuantGptqHessianF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ cols: Int64, _ h: UnsafePointer<Double>?,
    _ bits: Int64, _ symmetric: Bool, _ groupSize: Int64, _ damp: Double, _ blockSize: Int64,
    _ actOrder: Bool, _ staticGroups: Bool, _ mseGrid: Int64,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) -> sp_status {
    withStatus {
        let (count, scheme, options, outputs) = try gptqHessianExport(
            rows: rows, cols: cols, bits: bits, symmetric: symmetric, groupSize: groupSize, damp: damp,
            blockSize: blockSize, actOrder: actOrder, staticGroups: staticGroups, mseGrid: mseGrid,
            valuesOut: valuesOut, scaleOut: scaleOut, zeroPointOut: zeroPointOut, nScales: nScales)
        try outputs.fill { values, scales, zeroPoints in
            try GPTQ.quantize(weights: inputBuffer(w, count.weights, "w"), rows: Int(rows), cols: Int(cols),
                              hessian: inputBuffer(h, count.hessian, "h"), scheme: scheme, options: options,
                              values: values, scales: scales, zeroPoints: zeroPoints)
        }
    }
}

@_cdecl("sp_nm_quantize_encode")
public func spNMQuantizeEncode(
    _ weights: UnsafeRawPointer?, _ dtype: Int32, _ rows: Int64, _ columns: Int64, _ n: Int64, _ m: Int64,
    _ bits: Int64, _ symmetric: Bool, _ groupSize: Int64, _ scalesOut: UnsafeMutablePointer<Float>?,
    _ zeroPointsOut: UnsafeMutableRawPointer?, _ nmValuesOut: UnsafeMutablePointer<UInt8>?,
    _ nmPositionsOut: UnsafeMutablePointer<UInt8>?, _ maskBitsOut: UnsafeMutablePointer<UInt8>?,
    _ maskValuesOut: UnsafeMutablePointer<UInt8>?, _ nonzerosOut: UnsafeMutablePointer<Int64>?,
    _ maskValueBytesOut: UnsafeMutablePointer<Int64>?, _ normOut: UnsafeMutablePointer<Double>?,
    _ differenceOut: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus {
        guard let nonzerosOut, let maskValueBytesOut, let normOut, let differenceOut else {
            throw SwiftPruneError.value("nonzeros_out, mask_value_bytes_out, norm_out and difference_out must not be NULL")
        }
        guard rows >= 0, columns >= 0, (1 ... 256).contains(m), (1 ..< m).contains(n), groupSize >= 1,
              columns % m == 0, columns % groupSize == 0 else {
            throw SwiftPruneError.value("need rows, columns >= 0, 1 <= n < m <= 256 and m, group_size >= 1 dividing the "
                                        + "columns, got rows = \(rows), columns = \(columns), n = \(n), m = \(m), "
                                        + "group_size = \(groupSize)")
        }
        let scheme = try QuantizationScheme(bits: Int(bits), symmetric: symmetric)
        let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard !overflow, count <= Int64.max / 16 else {
            throw SwiftPruneError(.outOfMemory, "shape (\(rows), \(columns)) is too large")
        }
        let stored = count / m * n, groups = rows * (columns / groupSize)
        let valueBytes = Int64(FusedNMQuantization.packedBytes(Int(stored), bits: Int(bits)))
        let positionBytes = Int64(FusedNMQuantization.packedBytes(Int(stored), bits: FusedNMQuantization.indexBits(Int(m))))
        let source: FusedNMQuantization.Source
        switch dtype {
        case 0: source = .float32(try inputBuffer(weights?.assumingMemoryBound(to: Float.self), count, "weights").baseAddress
                                  ?? UnsafePointer(bitPattern: 8)!)
        case 1, 2:
            let halves = try inputBuffer(weights?.assumingMemoryBound(to: UInt16.self), count, "weights").baseAddress
                ?? UnsafePointer(bitPattern: 8)!
            source = dtype == 1 ? .float16(halves) : .bfloat16(halves)
        default: throw SwiftPruneError.value("dtype must be 0 (float32), 1 (float16) or 2 (bfloat16), got \(dtype)")
        }
        let summary = try FusedNMQuantization.run(
            source, rows: Int(rows), columns: Int(columns), n: Int(n), m: Int(m), scheme: scheme,
            groupSize: Int(groupSize),
            scales: try nonEmpty(outputBuffer(scalesOut, groups, "scales_out")),
            zeroPoints: try nonEmpty(outputBuffer(zeroPointsOut?.assumingMemoryBound(to: UInt8.self), groups, "zero_points_out")),
            nmValues: try nonEmpty(outputBuffer(nmValuesOut, valueBytes, "nm_values_out")),
            nmPositions: try nonEmpty(outputBuffer(nmPositionsOut, positionBytes, "nm_positions_out")),
            maskBits: try nonEmpty(outputBuffer(maskBitsOut, (count + 7) / 8, "mask_bits_out")),
            maskValues: try nonEmpty(outputBuffer(maskValuesOut, valueBytes, "mask_values_out")))
        nonzerosOut.pointee = Int64(summary.nonzeros)
        maskValueBytesOut.pointee = Int64(summary.maskValueBytes)
        normOut.pointee = summary.norm
        differenceOut.pointee = summary.difference
    }
}

/// An empty buffer with a (never read) non-nil base, so the kernel may take `baseAddress!`.
private func nonEmpty<T>(_ buffer: UnsafeMutableBufferPointer<T>) -> UnsafeMutableBufferPointer<T> {
    buffer.baseAddress != nil ? buffer : UnsafeMutableBufferPointer(start: UnsafeMutablePointer(bitPattern: 64), count: 0)
}

func checkQuantizationSignatures() {
    var nmQuantizeEncode = sp_nm_quantize_encode; implements(&nmQuantizeEncode, spNMQuantizeEncode)
    var gptqHessian = sp_quant_gptq_hessian_f64; implements(&gptqHessian, spQuantGptqHessianF64)
    var gptqHessianF32 = sp_quant_gptq_hessian_f32; implements(&gptqHessianF32, spQuantGptqHessianF32)
    var scaleShape = sp_quant_scale_shape; implements(&scaleShape, spQuantScaleShape)
    var quantizeF32 = sp_quant_quantize_f32; implements(&quantizeF32, spQuantQuantizeF32)
    var quantizeF64 = sp_quant_quantize_f64; implements(&quantizeF64, spQuantQuantizeF64)
    var dequantize = sp_quant_dequantize; implements(&dequantize, spQuantDequantize)
    var packBits = sp_quant_pack_bits; implements(&packBits, spQuantPackBits)
    var unpackBits = sp_quant_unpack_bits; implements(&unpackBits, spQuantUnpackBits)
    var halfF32 = sp_cast_float16_f32; implements(&halfF32, spCastFloat16F32)
    var halfF64 = sp_cast_float16_f64; implements(&halfF64, spCastFloat16F64)
    var brainF32 = sp_cast_bfloat16_f32; implements(&brainF32, spCastBFloat16F32)
    var brainF64 = sp_cast_bfloat16_f64; implements(&brainF64, spCastBFloat16F64)
    var clusterFit = sp_cluster_fit_f32; implements(&clusterFit, spClusterFitF32)
    var assignU8 = sp_cluster_assign_u8_f32; implements(&assignU8, spClusterAssignU8F32)
    var assignU16 = sp_cluster_assign_u16_f32; implements(&assignU16, spClusterAssignU16F32)
    var lookupU8 = sp_cluster_lookup_u8; implements(&lookupU8, spClusterLookupU8)
    var lookupU16 = sp_cluster_lookup_u16; implements(&lookupU16, spClusterLookupU16)
    var gptq = sp_quant_gptq_f64; implements(&gptq, spQuantGptqF64)
    var fitRows = sp_cluster_fit_rows_f32; implements(&fitRows, spClusterFitRowsF32)
}

@_cdecl("sp_cluster_fit_rows_f32")
public func spClusterFitRowsF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ rowLength: Int64, _ nClusters: Int64, _ initialization: Int32,
    _ maxIter: Int64, _ seed: UInt64, _ centroidsOut: UnsafeMutablePointer<Float>?,
    _ indicesOut: UnsafeMutableRawPointer?, _ indexBytes: Int32, _ iterationsOut: UnsafeMutablePointer<Int64>?
) -> sp_status {
    withStatus {
        guard let method = ClusterInitialization(rawValue: initialization) else {
            throw SwiftPruneError.value("unknown initialization \(initialization)")
        }
        guard rows >= 0, rowLength >= 0, nClusters >= 1, nClusters <= 65536 else {
            throw SwiftPruneError.value("rows, row_length must be >= 0 and n_clusters in 1..65536, got "
                                        + "\(rows), \(rowLength), \(nClusters)")
        }
        let (count, o1) = rows.multipliedReportingOverflow(by: rowLength)
        let (books, o2) = rows.multipliedReportingOverflow(by: nClusters)
        guard !o1, !o2 else { throw SwiftPruneError(.outOfMemory, "sizes overflow") }
        let x = try inputBuffer(w, count, "w")
        let centroids = try outputBuffer(centroidsOut, books, "centroids_out")
        let ran: Int
        switch indexBytes {
        case 1:
            let indices = try outputBuffer(indicesOut?.assumingMemoryBound(to: UInt8.self), count, "indices_out")
            ran = try KMeans1D.fitRows(x, rows: Int(rows), rowLength: Int(rowLength), clusters: Int(nClusters),
                                       initialization: method, maxIterations: Int(clamping: maxIter), seed: seed,
                                       centroids: centroids, indices: indices)
        case 2:
            let indices = try outputBuffer(indicesOut?.assumingMemoryBound(to: UInt16.self), count, "indices_out")
            ran = try KMeans1D.fitRows(x, rows: Int(rows), rowLength: Int(rowLength), clusters: Int(nClusters),
                                       initialization: method, maxIterations: Int(clamping: maxIter), seed: seed,
                                       centroids: centroids, indices: indices)
        default:
            throw SwiftPruneError.value("index_bytes must be 1 or 2, got \(indexBytes)")
        }
        iterationsOut?.pointee = Int64(ran)
    }
}
