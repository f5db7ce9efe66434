import CSwiftPrune
import SwiftPrune

@_cdecl("sp_magnitude_mask_f32")
public func spMagnitudeMaskF32(
    _ w: UnsafePointer<Float>?, _ n: Int64, _ sparsity: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let weights = try inputBuffer(w, n, "w")
        try magnitudeMask(TensorView(shape: [weights.count], buffer: weights), sparsity: sparsity,
                          into: MutableTensorView(shape: [weights.count], buffer: outputBuffer(maskOut, n, "mask_out")))
    }
}

@_cdecl("sp_magnitude_mask_f64")
public func spMagnitudeMaskF64(
    _ w: UnsafePointer<Double>?, _ n: Int64, _ sparsity: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let weights = try inputBuffer(w, n, "w")
        try magnitudeMask(TensorView(shape: [weights.count], buffer: weights), sparsity: sparsity,
                          into: MutableTensorView(shape: [weights.count], buffer: outputBuffer(maskOut, n, "mask_out")))
    }
}

// MARK: - helpers private to the pruning exports

/// A C shape (`ndim` int64 values) as `[Int]`, checked for a sane rank.
private func pruningShape(_ shape: UnsafePointer<Int64>?, _ ndim: Int64) throws -> [Int] {
    guard ndim >= 0 && ndim <= 64 else { throw SwiftPruneError.value("ndim must be in 0...64, got \(ndim)") }
    if ndim == 0 { return [] }
    guard let shape else { throw SwiftPruneError.value("shape is NULL") }
    return (0 ..< Int(ndim)).map { Int(shape[$0]) }
}

/// A read-only view of `w` with the given C shape.
private func pruningInput<S>(_ w: UnsafePointer<S>?, _ shape: [Int], _ name: String) throws -> TensorView<S> {
    let count = try Shape.elementCount(shape)
    return try TensorView(shape: shape, buffer: inputBuffer(w, Int64(count), name))
}

/// A writable view of `out` with the given C shape.
private func pruningOutput<S>(_ out: UnsafeMutablePointer<S>?, _ shape: [Int], _ name: String) throws -> MutableTensorView<S> {
    let count = try Shape.elementCount(shape)
    return try MutableTensorView(shape: shape, buffer: outputBuffer(out, Int64(count), name))
}

/// Shared body of the global magnitude exports.
private func globalMasks<S: MagnitudeOrdered>(
    _ ws: UnsafePointer<UnsafePointer<S>?>?, _ sizes: UnsafePointer<Int64>?, _ count: Int64,
    _ sparsity: Double, _ masksOut: UnsafePointer<UnsafeMutablePointer<Bool>?>?
) throws {
    guard count >= 0 else { throw SwiftPruneError.value("count must be >= 0, got \(count)") }
    if count > 0 && (ws == nil || sizes == nil || masksOut == nil) {
        throw SwiftPruneError.value("ws, sizes and masks_out must not be NULL")
    }
    var views: [TensorView<S>] = [], masks: [MutableTensorView<Bool>] = []
    for i in 0 ..< Int(count) {
        let n = sizes![i]
        let buffer = try inputBuffer(ws![i], n, "ws[\(i)]")
        views.append(try TensorView(shape: [buffer.count], buffer: buffer))
        let out = try outputBuffer(masksOut![i], n, "masks_out[\(i)]")
        masks.append(try MutableTensorView(shape: [out.count], buffer: out))
    }
    try globalMagnitudeMasks(views, sparsity: sparsity, into: masks)
}

// MARK: - global magnitude

@_cdecl("sp_global_magnitude_masks_f32")
public func spGlobalMagnitudeMasksF32(
    _ ws: UnsafePointer<UnsafePointer<Float>?>?, _ sizes: UnsafePointer<Int64>?, _ count: Int64,
    _ sparsity: Double, _ masksOut: UnsafePointer<UnsafeMutablePointer<Bool>?>?
) -> sp_status {
    withStatus { try globalMasks(ws, sizes, count, sparsity, masksOut) }
}

@_cdecl("sp_global_magnitude_masks_f64")
public func spGlobalMagnitudeMasksF64(
    _ ws: UnsafePointer<UnsafePointer<Double>?>?, _ sizes: UnsafePointer<Int64>?, _ count: Int64,
    _ sparsity: Double, _ masksOut: UnsafePointer<UnsafeMutablePointer<Bool>?>?
) -> sp_status {
    withStatus { try globalMasks(ws, sizes, count, sparsity, masksOut) }
}

// MARK: - random

@_cdecl("sp_random_mask")
public func spRandomMask(_ n: Int64, _ sparsity: Double, _ seed: UInt64, _ maskOut: UnsafeMutablePointer<Bool>?) -> sp_status {
    withStatus { try randomMask(sparsity: sparsity, seed: seed, into: outputBuffer(maskOut, n, "mask_out")) }
}

// MARK: - N:M

@_cdecl("sp_nm_mask_f32")
public func spNMMaskF32(
    _ w: UnsafePointer<Float>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ n: Int64, _ m: Int64, _ axis: Int64, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let dims = try pruningShape(shape, ndim)
        try nmMask(pruningInput(w, dims, "w"), n: Int(n), m: Int(m), axis: Int(axis),
                   into: pruningOutput(maskOut, dims, "mask_out"))
    }
}

@_cdecl("sp_nm_mask_f64")
public func spNMMaskF64(
    _ w: UnsafePointer<Double>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ n: Int64, _ m: Int64, _ axis: Int64, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let dims = try pruningShape(shape, ndim)
        try nmMask(pruningInput(w, dims, "w"), n: Int(n), m: Int(m), axis: Int(axis),
                   into: pruningOutput(maskOut, dims, "mask_out"))
    }
}

// MARK: - structured

@_cdecl("sp_structured_mask_f32")
public func spStructuredMaskF32(
    _ w: UnsafePointer<Float>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ amount: Double, _ axis: Int64, _ norm: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let dims = try pruningShape(shape, ndim)
        try structuredMask(pruningInput(w, dims, "w"), amount: amount, axis: Int(axis), norm: SliceNorm(order: norm),
                           into: pruningOutput(maskOut, dims, "mask_out"))
    }
}

@_cdecl("sp_structured_mask_f64")
public func spStructuredMaskF64(
    _ w: UnsafePointer<Double>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ amount: Double, _ axis: Int64, _ norm: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let dims = try pruningShape(shape, ndim)
        try structuredMask(pruningInput(w, dims, "w"), amount: amount, axis: Int(axis), norm: SliceNorm(order: norm),
                           into: pruningOutput(maskOut, dims, "mask_out"))
    }
}

@_cdecl("sp_structured_keep_f32")
public func spStructuredKeepF32(
    _ w: UnsafePointer<Float>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ amount: Double, _ axis: Int64, _ norm: Double, _ keepOut: UnsafeMutablePointer<Bool>?, _ keepCount: Int64
) -> sp_status {
    withStatus {
        let dims = try pruningShape(shape, ndim)
        try structuredSliceMask(pruningInput(w, dims, "w"), amount: amount, axis: Int(axis),
                                norm: SliceNorm(order: norm), into: outputBuffer(keepOut, keepCount, "keep_out"))
    }
}

@_cdecl("sp_structured_keep_f64")
public func spStructuredKeepF64(
    _ w: UnsafePointer<Double>?, _ shape: UnsafePointer<Int64>?, _ ndim: Int64,
    _ amount: Double, _ axis: Int64, _ norm: Double, _ keepOut: UnsafeMutablePointer<Bool>?, _ keepCount: Int64
) -> sp_status {
    withStatus {
        let dims = try pruningShape(shape, ndim)
        try structuredSliceMask(pruningInput(w, dims, "w"), amount: amount, axis: Int(axis),
                                norm: SliceNorm(order: norm), into: outputBuffer(keepOut, keepCount, "keep_out"))
    }
}

// MARK: - block

@_cdecl("sp_block_mask_f32")
public func spBlockMaskF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ columns: Int64, _ sparsity: Double,
    _ blockRows: Int64, _ blockColumns: Int64, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let dims = [Int(rows), Int(columns)]
        try blockMask(pruningInput(w, dims, "w"), sparsity: sparsity, blockRows: Int(blockRows),
                      blockColumns: Int(blockColumns), into: pruningOutput(maskOut, dims, "mask_out"))
    }
}

@_cdecl("sp_block_mask_f64")
public func spBlockMaskF64(
    _ w: UnsafePointer<Double>?, _ rows: Int64, _ columns: Int64, _ sparsity: Double,
    _ blockRows: Int64, _ blockColumns: Int64, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let dims = [Int(rows), Int(columns)]
        try blockMask(pruningInput(w, dims, "w"), sparsity: sparsity, blockRows: Int(blockRows),
                      blockColumns: Int(blockColumns), into: pruningOutput(maskOut, dims, "mask_out"))
    }
}

func checkPruningSignatures() {
    var maskF32 = sp_magnitude_mask_f32; implements(&maskF32, spMagnitudeMaskF32)
    var maskF64 = sp_magnitude_mask_f64; implements(&maskF64, spMagnitudeMaskF64)
    var globalF32 = sp_global_magnitude_masks_f32; implements(&globalF32, spGlobalMagnitudeMasksF32)
    var globalF64 = sp_global_magnitude_masks_f64; implements(&globalF64, spGlobalMagnitudeMasksF64)
    var random = sp_random_mask; implements(&random, spRandomMask)
    var nmF32 = sp_nm_mask_f32; implements(&nmF32, spNMMaskF32)
    var nmF64 = sp_nm_mask_f64; implements(&nmF64, spNMMaskF64)
    var structuredF32 = sp_structured_mask_f32; implements(&structuredF32, spStructuredMaskF32)
    var structuredF64 = sp_structured_mask_f64; implements(&structuredF64, spStructuredMaskF64)
    var keepF32 = sp_structured_keep_f32; implements(&keepF32, spStructuredKeepF32)
    var keepF64 = sp_structured_keep_f64; implements(&keepF64, spStructuredKeepF64)
    var blockF32 = sp_block_mask_f32; implements(&blockF32, spBlockMaskF32)
    var blockF64 = sp_block_mask_f64; implements(&blockF64, spBlockMaskF64)
}

// MARK: - calibration-aware (Wanda, SparseGPT)

private func calibrationViews<S>(
    _ w: UnsafePointer<S>?, _ rows: Int64, _ columns: Int64, _ x: UnsafePointer<S>?, _ samples: Int64
) throws -> (TensorView<S>, TensorView<S>) {
    (try pruningInput(w, [Int(rows), Int(columns)], "w"), try pruningInput(x, [Int(samples), Int(columns)], "x"))
}

private func sparseGPTPattern(_ sparsity: Double, _ n: Int64, _ m: Int64) -> SparseGPTPattern {
    n == 0 && m == 0 ? .unstructured(sparsity: sparsity) : .nm(n: Int(n), m: Int(m))
}

@_cdecl("sp_wanda_mask_f32")
public func spWandaMaskF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ columns: Int64, _ x: UnsafePointer<Float>?, _ samples: Int64,
    _ sparsity: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let (weights, activations) = try calibrationViews(w, rows, columns, x, samples)
        try wandaMask(weights, activations: activations, sparsity: sparsity,
                      into: pruningOutput(maskOut, weights.shape, "mask_out"))
    }
}

@_cdecl("sp_wanda_mask_f64")
public func spWandaMaskF64(
    _ w: UnsafePointer<Double>?, _ rows: Int64, _ columns: Int64, _ x: UnsafePointer<Double>?, _ samples: Int64,
    _ sparsity: Double, _ maskOut: UnsafeMutablePointer<Bool>?
) -> sp_status {
    withStatus {
        let (weights, activations) = try calibrationViews(w, rows, columns, x, samples)
        try wandaMask(weights, activations: activations, sparsity: sparsity,
                      into: pruningOutput(maskOut, weights.shape, "mask_out"))
    }
}

@_cdecl("sp_sparsegpt_f32")
public func spSparseGPTF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ columns: Int64, _ x: UnsafePointer<Float>?, _ samples: Int64,
    _ sparsity: Double, _ n: Int64, _ m: Int64, _ blockSize: Int64, _ damp: Double, _ wOut: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let (weights, activations) = try calibrationViews(w, rows, columns, x, samples)
        try sparseGPT(weights, activations: activations, pattern: sparseGPTPattern(sparsity, n, m),
                      blockSize: Int(blockSize), damp: damp, into: pruningOutput(wOut, weights.shape, "w_out"))
    }
}

@_cdecl("sp_sparsegpt_f64")
public func spSparseGPTF64(
    _ w: UnsafePointer<Double>?, _ rows: Int64, _ columns: Int64, _ x: UnsafePointer<Double>?, _ samples: Int64,
    _ sparsity: Double, _ n: Int64, _ m: Int64, _ blockSize: Int64, _ damp: Double, _ wOut: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus {
        let (weights, activations) = try calibrationViews(w, rows, columns, x, samples)
        try sparseGPT(weights, activations: activations, pattern: sparseGPTPattern(sparsity, n, m),
                      blockSize: Int(blockSize), damp: damp, into: pruningOutput(wOut, weights.shape, "w_out"))
    }
}

@_cdecl("sp_hessian_accumulate_f32")
public func spHessianAccumulateF32(
    _ x: UnsafePointer<Float>?, _ samples: Int64, _ features: Int64, _ h: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus { try hessianAccumulate(x, samples, features, h) }
}

@_cdecl("sp_hessian_accumulate_f64")
public func spHessianAccumulateF64(
    _ x: UnsafePointer<Double>?, _ samples: Int64, _ features: Int64, _ h: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus { try hessianAccumulate(x, samples, features, h) }
}

@_cdecl("sp_hessian_accumulate_scratch_f32")
public func spHessianAccumulateScratchF32(
    _ x: UnsafePointer<Float>?, _ samples: Int64, _ features: Int64, _ h: UnsafeMutablePointer<Double>?,
    _ scratch: UnsafeMutablePointer<Float>?, _ scratchCount: Int64
) -> sp_status {
    withStatus { try hessianAccumulate(x, samples, features, h, scratch: outputBuffer(scratch, scratchCount, "scratch")) }
}

@_cdecl("sp_hessian_accumulate_scratch_f64")
public func spHessianAccumulateScratchF64(
    _ x: UnsafePointer<Double>?, _ samples: Int64, _ features: Int64, _ h: UnsafeMutablePointer<Double>?,
    _ scratch: UnsafeMutablePointer<Double>?, _ scratchCount: Int64
) -> sp_status {
    withStatus { try hessianAccumulate(x, samples, features, h, scratch: outputBuffer(scratch, scratchCount, "scratch")) }
}

private func hessianAccumulate<S: GEMMScalar>(
    _ x: UnsafePointer<S>?, _ samples: Int64, _ features: Int64, _ h: UnsafeMutablePointer<Double>?,
    scratch: UnsafeMutableBufferPointer<S>? = nil
) throws {
    guard samples >= 0, features >= 0 else { throw SwiftPruneError.value("samples and features must be >= 0") }
    let (count, o1) = samples.multipliedReportingOverflow(by: features)
    let (square, o2) = features.multipliedReportingOverflow(by: features)
    guard !o1, !o2 else { throw SwiftPruneError(.outOfMemory, "sizes overflow") }
    try accumulateHessian(inputBuffer(x, count, "x"), samples: Int(samples), features: Int(features),
                          into: outputBuffer(h, square, "h"), scratch: scratch)
}

@_cdecl("sp_sparsegpt_hessian_f64")
public func spSparseGPTHessianF64(
    _ w: UnsafePointer<Double>?, _ rows: Int64, _ columns: Int64, _ h: UnsafeMutablePointer<Double>?,
    _ sparsity: Double, _ n: Int64, _ m: Int64, _ blockSize: Int64, _ damp: Double, _ wOut: UnsafeMutablePointer<Double>?
) -> sp_status {
    withStatus {
        let count = try hessianExportCounts(method: "sparsegpt", rows: rows, cols: columns, blockSize: blockSize)
        let weights: TensorView<Double> = try pruningInput(w, [Int(rows), Int(columns)], "w")
        try sparseGPT(weights, hessian: outputBuffer(h, count.hessian, "h"), pattern: sparseGPTPattern(sparsity, n, m),
                      blockSize: Int(blockSize), damp: damp, into: pruningOutput(wOut, weights.shape, "w_out"))
    }
}

@_cdecl("sp_sparsegpt_hessian_f32")
public func spSparseGPTHessianF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ columns: Int64, _ h: UnsafePointer<Double>?,
    _ sparsity: Double, _ n: Int64, _ m: Int64, _ blockSize: Int64, _ damp: Double, _ wOut: UnsafeMutablePointer<Float>?
) -> sp_status {
    withStatus {
        let count = try hessianExportCounts(method: "sparsegpt", rows: rows, cols: columns, blockSize: blockSize)
        let weights: TensorView<Float> = try pruningInput(w, [Int(rows), Int(columns)], "w")
        let hessian = try inputBuffer(h, count.hessian, "h")
        // Only read: the mutable view is the generic entry's signature.
        try sparseGPT(weights, hessian: UnsafeMutableBufferPointer(mutating: hessian), pattern: sparseGPTPattern(sparsity, n, m),
                      blockSize: Int(blockSize), damp: damp, into: pruningOutput(wOut, weights.shape, "w_out"))
    }
}

@_cdecl("sp_sparsegpt_quant_hessian_f32")
public func spSparseGPTQuantHessianF32(
    _ w: UnsafePointer<Float>?, _ rows: Int64, _ columns: Int64, _ h: UnsafePointer<Double>?,
    _ sparsity: Double, _ n: Int64, _ m: Int64, _ blockSize: Int64, _ damp: Double,
    _ bits: Int64, _ symmetric: Bool, _ groupSize: Int64,
    _ valuesOut: UnsafeMutableRawPointer?, _ scaleOut: UnsafeMutablePointer<Float>?,
    _ zeroPointOut: UnsafeMutableRawPointer?, _ nScales: Int64
) -> sp_status {
    withStatus {
        let count = try hessianExportCounts(method: "sparsegpt", rows: rows, cols: columns, groupSize: groupSize,
                                            blockSize: blockSize)
        let scheme = try QuantizationScheme(bits: Int(bits), symmetric: symmetric)
        let group = groupSize == 0 ? nil : Int(groupSize)
        let outputs = try RowQuantizationOutputs(rows: rows, cols: columns, groupSize: group, valuesOut: valuesOut,
                                                 scaleOut: scaleOut, zeroPointOut: zeroPointOut, nScales: nScales)
        try outputs.fill { values, scales, zeroPoints in
            try sparseGPTQuantized(weights: inputBuffer(w, count.weights, "w"), rows: Int(rows), cols: Int(columns),
                                   hessian: inputBuffer(h, count.hessian, "h"), pattern: sparseGPTPattern(sparsity, n, m),
                                   scheme: scheme, groupSize: group, blockSize: Int(blockSize), damp: damp,
                                   values: values, scales: scales, zeroPoints: zeroPoints)
        }
    }
}

func checkPruningCalibrationSignatures() {
    var hessianF32 = sp_hessian_accumulate_f32; implements(&hessianF32, spHessianAccumulateF32)
    var hessianF64 = sp_hessian_accumulate_f64; implements(&hessianF64, spHessianAccumulateF64)
    var hessianScratchF32 = sp_hessian_accumulate_scratch_f32
    implements(&hessianScratchF32, spHessianAccumulateScratchF32)
    var hessianScratchF64 = sp_hessian_accumulate_scratch_f64
    implements(&hessianScratchF64, spHessianAccumulateScratchF64)
    var sparseHessian = sp_sparsegpt_hessian_f64; implements(&sparseHessian, spSparseGPTHessianF64)
    var sparseHessianF32 = sp_sparsegpt_hessian_f32; implements(&sparseHessianF32, spSparseGPTHessianF32)
    var sparseQuant = sp_sparsegpt_quant_hessian_f32; implements(&sparseQuant, spSparseGPTQuantHessianF32)
    var wandaF32 = sp_wanda_mask_f32; implements(&wandaF32, spWandaMaskF32)
    var wandaF64 = sp_wanda_mask_f64; implements(&wandaF64, spWandaMaskF64)
    var sparseF32 = sp_sparsegpt_f32; implements(&sparseF32, spSparseGPTF32)
    var sparseF64 = sp_sparsegpt_f64; implements(&sparseF64, spSparseGPTF64)
}
