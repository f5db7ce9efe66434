import SwiftPrune

// The argument checks and outputs shared by the Hessian-based exports (GPTQ's two precisions, SparseGPT's
// Hessian and joint-quantization entries): one place, so that every entry has every bound.

/// The element counts of `w` (rows × cols) and of the Hessian (cols × cols) of a Hessian-based export, after the
/// checks each of them makes: dimensions and `group_size` >= 0, `block_size` in 1...``GPTQ/maximumBlockSize``, at
/// most ``GPTQ/maximumColumns`` input columns (SP_ERR_MEMORY; `method` names the export), and no overflow.
func hessianExportCounts(
    method: String, rows: Int64, cols: Int64, groupSize: Int64 = 0, blockSize: Int64
) throws -> (weights: Int64, hessian: Int64) {
    guard rows >= 0, cols >= 0, groupSize >= 0 else {
        throw SwiftPruneError.value("rows, cols and group_size must be >= 0")
    }
    guard blockSize >= 1 && blockSize <= Int64(GPTQ.maximumBlockSize) else {
        throw SwiftPruneError.value("block_size must be in 1...\(GPTQ.maximumBlockSize), got \(blockSize)")
    }
    guard cols <= Int64(GPTQ.maximumColumns) else {
        throw SwiftPruneError(.outOfMemory, "\(method) supports at most \(GPTQ.maximumColumns) input columns, got \(cols)")
    }
    let (weights, o1) = rows.multipliedReportingOverflow(by: cols)
    let (hessian, o2) = cols.multipliedReportingOverflow(by: cols)
    guard !o1, !o2 else { throw SwiftPruneError(.outOfMemory, "sizes overflow") }
    return (weights, hessian)
}

/// The options of the `sp_quant_gptq_hessian_*` exports (`group_size` 0: one scale per row).
func gptqExportOptions(
    groupSize: Int64, damp: Double, blockSize: Int64, actOrder: Bool, staticGroups: Bool, mseGrid: Int64
) throws -> GPTQOptions {
    guard mseGrid >= 0, mseGrid <= 10_000 else {
        throw SwiftPruneError.value("mse_grid must be in 0...10000, got \(mseGrid)")
    }
    var options = GPTQOptions()
    options.groupSize = groupSize == 0 ? nil : Int(groupSize)
    options.damp = damp
    options.blockSize = Int(blockSize)
    options.actOrder = actOrder
    options.staticGroups = staticGroups
    options.mseGrid = Int(mseGrid)
    return options
}

/// Everything the two `sp_quant_gptq_hessian_*` exports check and set up before they run: the element counts,
/// the scheme, the options and the caller's outputs (the exports differ only in the call that follows).
func gptqHessianExport(
    rows: Int64, cols: Int64, bits: Int64, symmetric: Bool, groupSize: Int64, damp: Double, blockSize: Int64,
    actOrder: Bool, staticGroups: Bool, mseGrid: Int64, valuesOut: UnsafeMutableRawPointer?,
    scaleOut: UnsafeMutablePointer<Float>?, zeroPointOut: UnsafeMutableRawPointer?, nScales: Int64
) throws -> (count: (weights: Int64, hessian: Int64), scheme: QuantizationScheme, options: GPTQOptions,
             outputs: RowQuantizationOutputs) {
    let count = try hessianExportCounts(method: "gptq", rows: rows, cols: cols, groupSize: groupSize,
                                        blockSize: blockSize)
    let scheme = try QuantizationScheme(bits: Int(bits), symmetric: symmetric)
    let options = try gptqExportOptions(groupSize: groupSize, damp: damp, blockSize: blockSize, actOrder: actOrder,
                                        staticGroups: staticGroups, mseGrid: mseGrid)
    let outputs = try RowQuantizationOutputs(rows: rows, cols: cols, groupSize: options.groupSize,
                                             valuesOut: valuesOut, scaleOut: scaleOut, zeroPointOut: zeroPointOut,
                                             nScales: nScales)
    return (count, scheme, options, outputs)
}

/// The caller's outputs of a row-wise grouped quantization (GPTQ, SparseGPT's joint form): `values` (rows × cols
/// bytes, `Int8` bit patterns when symmetric), one float32 scale and one zero-point byte per row and group;
/// `n_scales` must be the layout's group count. The dimensions must have passed ``hessianExportCounts``
/// (or an equal overflow check).
struct RowQuantizationOutputs {
    let values: UnsafeMutableBufferPointer<UInt8>
    let scales: UnsafeMutableBufferPointer<Float>
    let zeroPoints: UnsafeMutableBufferPointer<UInt8>

    init(rows: Int64, cols: Int64, groupSize: Int?, valuesOut: UnsafeMutableRawPointer?,
         scaleOut: UnsafeMutablePointer<Float>?, zeroPointOut: UnsafeMutableRawPointer?, nScales: Int64) throws {
        let layout = try QuantizationLayout(shape: [Int(rows), Int(cols)], axis: 0, groupSize: groupSize)
        guard nScales == Int64(layout.groupCount) else {
            throw SwiftPruneError.value("n_scales is \(nScales), the layout has \(layout.groupCount) groups")
        }
        values = try outputBuffer(valuesOut?.assumingMemoryBound(to: UInt8.self), rows * cols, "values_out")
        scales = try outputBuffer(scaleOut, nScales, "scale_out")
        zeroPoints = try outputBuffer(zeroPointOut?.assumingMemoryBound(to: UInt8.self), nScales, "zero_point_out")
    }

    /// Runs `quantize` into these outputs with `Int32` zero points (the core's type) and stores them as bytes.
    func fill(
        _ quantize: (UnsafeMutableBufferPointer<UInt8>, UnsafeMutableBufferPointer<Float>,
                     UnsafeMutableBufferPointer<Int32>) throws -> Void
    ) throws {
        var wide = try [Int32](fallibleRepeating: 0, count: zeroPoints.count, "zero points")
        try wide.withUnsafeMutableBufferPointer { try quantize(values, scales, $0) }
        for g in 0 ..< zeroPoints.count { zeroPoints[g] = UInt8(truncatingIfNeeded: wide[g]) }
    }

    /// Copies `result`, a tensor of this layout (the float64 entries' path).
    func store(_ result: QuantizedTensor) {
        for i in 0 ..< values.count { values[i] = result.storage[i] }
        for g in 0 ..< scales.count {
            scales[g] = result.scales[g]
            zeroPoints[g] = UInt8(truncatingIfNeeded: result.zeroPoints[g])
        }
    }
}
