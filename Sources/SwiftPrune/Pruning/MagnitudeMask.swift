/// Throws unless `masks` has one buffer per segment of `data`, each of its segment's length.
func checkMaskSegments<S>(_ masks: [UnsafeMutableBufferPointer<Bool>], _ data: SegmentedBuffer<S>) throws {
    guard masks.count == data.segments.count,
          zip(masks, data.segments).allSatisfy({ $0.count == $1.count }) else {
        throw SwiftPruneError.value("mask buffers do not match the weight buffers")
    }
}

/// Writes the keep-mask that prunes the `k` smallest magnitudes of `data`
/// (ties: the lower flat index is pruned first) into `masks`, one mask
/// segment per data segment. `true` means kept.
///
/// This is the one mask writer behind per-tensor and global magnitude pruning.
/// - Throws: ``SwiftPruneError`` on NaN/Inf, a bad `k` or mismatched segments.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func writeMagnitudeMasks<S: MagnitudeOrdered>(
    _ data: SegmentedBuffer<S>, prune k: Int, into masks: [UnsafeMutableBufferPointer<Bool>]
) throws {
    try checkMaskSegments(masks, data)
    let total = data.count
    let workers = Threading.workerCount(for: total, minimumPerWorker: 1 << 16)
    guard let threshold = try MagnitudeSelection.select(data, k: k) else {
        for mask in masks where mask.count > 0 { mask.initialize(repeating: true) }
        return
    }
    let t = threshold.key
    let equalToPrune = k - threshold.countBelow

    // Everything above the threshold is kept; ties are kept too when only
    // some of them are to be pruned. A pure comparison: vectorizable.
    let keepTies = equalToPrune < threshold.countEqual
    parallelFor(workers: workers) { worker in
        data.forEachPiece(of: partitionRange(total, parts: workers, index: worker)) { segment, range in
            let values = data.segments[segment].baseAddress!, mask = masks[segment].baseAddress!
            if keepTies {
                for i in range { mask[i] = values[i].magnitudeKey >= t }
            } else {
                for i in range { mask[i] = values[i].magnitudeKey > t }
            }
        }
    }
    guard keepTies else { return }
    // Prune the first `equalToPrune` ties in flat order; the scan stops there.
    var remaining = equalToPrune
    for segment in data.segments.indices where remaining > 0 {
        let values = data.segments[segment], mask = masks[segment]
        var i = 0
        while i < values.count && remaining > 0 {
            if values[i].magnitudeKey == t { mask[i] = false; remaining -= 1 }
            i += 1
        }
    }
}

/// Writes into `mask` the keep-mask of `weights` at `sparsity`: exactly
/// `round(sparsity * count)` entries of smallest `|w|` are pruned (`false`),
/// the lower flat index first among equal magnitudes.
/// - Throws: ``SwiftPruneError`` for sparsity outside [0, 1], NaN/Inf weights
///   or a mask of another size.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func magnitudeMask<S: MagnitudeOrdered>(
    _ weights: TensorView<S>, sparsity: Double, into mask: MutableTensorView<Bool>
) throws {
    guard mask.count == weights.count else {
        throw SwiftPruneError.value("mask has \(mask.count) elements, weights have \(weights.count)")
    }
    let k = try prunedCount(sparsity: sparsity, of: weights.count)
    let data = try SegmentedBuffer([weights.buffer])
    try writeMagnitudeMasksFastest(data, prune: k, into: [mask.buffer])
}

/// The keep-mask of `weights` at `sparsity`; see ``magnitudeMask(_:sparsity:into:)``.
public func magnitudeMask<S: MagnitudeOrdered>(_ weights: Tensor<S>, sparsity: Double) throws -> Tensor<Bool> {
    var mask = try Tensor<Bool>(shape: weights.shape, repeating: true)
    try weights.withView { view in
        try mask.withMutableView { try magnitudeMask(view, sparsity: sparsity, into: $0) }
    }
    return mask
}

/// `weights` with its `round(sparsity * count)` smallest magnitudes set to zero.
public func pruneMagnitude<S: MagnitudeOrdered>(_ weights: Tensor<S>, sparsity: Double) throws -> Tensor<S> {
    let mask = try magnitudeMask(weights, sparsity: sparsity)
    return try Tensor(shape: weights.shape, scalars: zip(weights.scalars, mask.scalars).map { $1 ? $0 : 0 })
}
