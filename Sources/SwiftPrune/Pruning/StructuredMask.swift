/// Structured (L_n) pruning: removes whole slices along `axis`.
///
/// `round(amount * weights.shape[axis])` slices are pruned, those of smallest
/// ``sliceNorms(_:axis:norm:)``, the lower index first among equal norms, as
/// `torch.nn.utils.prune.ln_structured(w, amount, n=norm, dim=axis)` does.
/// `keep[l]` receives whether slice `l` is kept.
/// - Throws: ``SwiftPruneError`` for amount outside [0, 1], a scalar, an axis
///   out of range, NaN/Inf weights or a `keep` buffer of another length.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func structuredSliceMask<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: TensorView<S>, amount: Double, axis: Int, norm: SliceNorm, into keep: UnsafeMutableBufferPointer<Bool>
) throws {
    guard amount >= 0 && amount <= 1 else {
        throw SwiftPruneError.value("amount must be in [0, 1], got \(amount)")
    }
    let norms = try sliceNorms(weights, axis: axis, norm: norm)
    guard keep.count == norms.count else {
        throw SwiftPruneError.value("keep has \(keep.count) entries, w.shape[axis] is \(norms.count)")
    }
    let k = try prunedCount(sparsity: amount, of: norms.count)
    try norms.withUnsafeBufferPointer { scores in
        try writeMagnitudeMasks(SegmentedBuffer([scores]), prune: k, into: [keep])
    }
}

/// Writes the element keep-mask of structured pruning along `axis`; see
/// ``structuredSliceMask(_:amount:axis:norm:into:)`` for the selection rule.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func structuredMask<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: TensorView<S>, amount: Double, axis: Int, norm: SliceNorm, into mask: MutableTensorView<Bool>
) throws {
    try checkMaskMatches(mask, weights)
    let split = try AxisSplit(shape: weights.shape, axis: axis)
    guard weights.count > 0 else {
        // Nothing to score or write (and shape[axis] may be huge for an empty tensor).
        guard amount >= 0 && amount <= 1 else {
            throw SwiftPruneError.value("amount must be in [0, 1], got \(amount)")
        }
        return
    }
    var keep = try [Bool](fallibleRepeating: true, count: split.length)
    try keep.withUnsafeMutableBufferPointer {
        try structuredSliceMask(weights, amount: amount, axis: axis, norm: norm, into: $0)
    }
    guard mask.count > 0 else { return }
    let target = mask.buffer.baseAddress!
    let length = split.length, inner = split.inner, plane = length * inner
    let workers = MemoryBoundWorkers.count(size: weights.count * MemoryLayout<S>.stride, threshold: MemoryBoundWorkers.structuredBytes,
                                           work: mask.count, minimumPerWorker: 1 << 18)
    keep.withUnsafeBufferPointer { keepBuffer in
        let flags = keepBuffer.baseAddress!
        if mask.count >= StreamedMaskWrite.threshold && (inner == 1 || inner >= 64) {
            // Large masks of long runs: streamed in flat order (StreamedMaskWrite), in
            // chunks dealt from a shared counter so a late worker leaves its share to the others.
            let total = mask.count, chunk = dealtChunkSize(total, workers: workers, minimum: 1 << 18, multiple: 64)
            parallelForRanges(total, chunk: chunk, workers: workers) { range in
                StreamedMaskWrite.write(target, range) { into, position, count in
                    var k = 0, p = position
                    while k < count {
                        if inner == 1 {
                            // Consecutive slices: a run of `flags`.
                            let l = p % length, run = Swift.min(length - l, count - k)
                            (into + k).update(from: flags + l, count: run)
                            k += run; p += run
                        } else {
                            // Within one slice: a run of one flag.
                            let l = (p / inner) % length, run = Swift.min(inner - p % inner, count - k)
                            (into + k).update(repeating: flags[l], count: run)
                            k += run; p += run
                        }
                    }
                }
            }
        } else if split.outer >= workers {
            // Each worker fills whole (length × inner) planes.
            parallelFor(workers: workers) { worker in
                for o in partitionRange(split.outer, parts: workers, index: worker) {
                    let out = target + o * plane
                    if inner == 1 {
                        out.update(from: flags, count: length)
                    } else {
                        for l in 0 ..< length { (out + l * inner).update(repeating: flags[l], count: inner) }
                    }
                }
            }
        } else {
            // Few planes (e.g. axis 0): split the slices of each plane instead.
            for o in 0 ..< split.outer {
                let out = target + o * plane
                parallelFor(workers: workers) { worker in
                    for l in partitionRange(length, parts: workers, index: worker) {
                        (out + l * inner).update(repeating: flags[l], count: inner)
                    }
                }
            }
        }
    }
}

/// The keep-mask of structured pruning; see ``structuredMask(_:amount:axis:norm:into:)``.
public func structuredMask<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: Tensor<S>, amount: Double, axis: Int = 0, norm: SliceNorm = .l2
) throws -> Tensor<Bool> {
    try pruningMaskTensor(shape: weights.shape) { out in
        try weights.withView { try structuredMask($0, amount: amount, axis: axis, norm: norm, into: out) }
    }
}
