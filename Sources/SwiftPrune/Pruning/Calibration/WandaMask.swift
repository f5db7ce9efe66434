/// Wanda (Sun et al., 2023, "A Simple and Effective Pruning Approach for
/// Large Language Models"): prunes a linear layer's weights by
/// `|W_ij| · ‖X_j‖₂`, the weight magnitude times the L2 norm of its input
/// feature over the calibration samples, compared within each output row.
///
/// Every row of `weights` (`out × in`) gets exactly `round(sparsity * in)`
/// entries pruned, those of smallest score, the lower column first among
/// equal scores. Scores are computed in Double.
/// - Parameters:
///   - weights: `(out, in)`, row-major (PyTorch `Linear` layout).
///   - activations: `(samples, in)`, the layer's inputs.
/// - Throws: ``SwiftPruneError`` for non-2-D shapes, mismatched feature
///   counts, sparsity outside [0, 1], NaN/Inf, or a mask of another size.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func wandaMask<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: TensorView<S>, activations: TensorView<S>, sparsity: Double, into mask: MutableTensorView<Bool>
) throws {
    try checkMaskMatches(mask, weights)
    guard weights.rank == 2 else { throw SwiftPruneError.value("w must be 2-D (out, in), got shape \(weights.shape)") }
    guard activations.rank == 2 else {
        throw SwiftPruneError.value("x must be 2-D (samples, in), got shape \(activations.shape)")
    }
    let rows = weights.shape[0], columns = weights.shape[1]
    guard activations.shape[1] == columns else {
        throw SwiftPruneError.value(
            "x has \(activations.shape[1]) features but w has \(columns) input columns (w is (out, in))")
    }
    let k = try prunedCount(sparsity: sparsity, of: columns)
    // NaN/Inf in w: check on the bit patterns.
    var worst: S.MagnitudeKey = 0
    for x in weights.buffer { worst = max(worst, x.magnitudeKey) }
    guard worst < S.infinityKey else { throw SwiftPruneError.value("w contains NaN or Inf values") }
    guard weights.count > 0 else {
        try checkFinite(activations)
        return
    }
    let norms = try sliceNorms(activations, axis: 1, norm: .l2)
    let source = weights.buffer.baseAddress!, target = mask.buffer.baseAddress!
    let workers = Threading.workerCount(for: weights.count, minimumPerWorker: 1 << 15)
    // Each worker's row of scores and selection scratch, allocated here: one refusal before any work
    // (allocated in parallelForThrowing's workers, the peak would be the same, the failure later).
    let allScores = try FallibleAllocation.allocate(Double.self, count: workers * columns, "wanda's scores")
    defer { FallibleAllocation.free(allScores) }
    let allScratch = try FallibleAllocation.allocate(UInt64.self, count: workers * columns, "wanda's selection scratch")
    defer { FallibleAllocation.free(allScratch) }
    norms.withUnsafeBufferPointer { normBuffer in
        let norm = normBuffer.baseAddress!
        parallelFor(workers: workers) { worker in
            let scores = allScores + worker * columns, scratch = allScratch + worker * columns
            for r in partitionRange(rows, parts: workers, index: worker) {
                let row = source + r * columns
                for c in 0 ..< columns { scores[c] = Double(row[c].magnitude) * norm[c] }
                pruneSmallestK(scores, count: columns, k: k, scratch: scratch, keep: target + r * columns)
            }
        }
    }
}

/// The Wanda keep-mask; see ``wandaMask(_:activations:sparsity:into:)``.
public func wandaMask<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: Tensor<S>, activations: Tensor<S>, sparsity: Double
) throws -> Tensor<Bool> {
    try pruningMaskTensor(shape: weights.shape) { out in
        try weights.withView { w in
            try activations.withView { x in try wandaMask(w, activations: x, sparsity: sparsity, into: out) }
        }
    }
}

/// Throws unless every value of `values` is finite.
func checkFinite<S: MagnitudeOrdered>(_ values: TensorView<S>) throws {
    var worst: S.MagnitudeKey = 0
    for x in values.buffer { worst = max(worst, x.magnitudeKey) }
    guard worst < S.infinityKey else { throw SwiftPruneError.value("x contains NaN or Inf values") }
}
