/// Global magnitude pruning: one threshold over several tensors together.
///
/// Exactly `k = round(sparsity * total)` entries are pruned over all of
/// `weights`, where `total` is the sum of their sizes: those of smallest `|w|`,
/// the lower position in the concatenation (tensor order, then C order) first
/// among equal magnitudes. `masks[i]` receives the keep-mask of `weights[i]`.
/// - Throws: ``SwiftPruneError`` for sparsity outside [0, 1], NaN/Inf weights,
///   or masks that do not match the weights.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func globalMagnitudeMasks<S: MagnitudeOrdered>(
    _ weights: [TensorView<S>], sparsity: Double, into masks: [MutableTensorView<Bool>]
) throws {
    guard weights.count == masks.count else {
        throw SwiftPruneError.value("got \(weights.count) weight tensors but \(masks.count) masks")
    }
    for (index, (w, mask)) in zip(weights, masks).enumerated() where w.count != mask.count {
        throw SwiftPruneError.value("mask \(index) has \(mask.count) elements, weights \(index) have \(w.count)")
    }
    let data = try SegmentedBuffer(weights.map(\.buffer))
    let k = try prunedCount(sparsity: sparsity, of: data.count)
    try writeMagnitudeMasksFastest(data, prune: k, into: masks.map(\.buffer))
}

/// The keep-masks of `weights` pruned globally at `sparsity`; see
/// ``globalMagnitudeMasks(_:sparsity:into:)``.
public func globalMagnitudeMasks<S: MagnitudeOrdered>(_ weights: [Tensor<S>], sparsity: Double) throws -> [Tensor<Bool>] {
    let buffers = weights.map { w -> UnsafeMutableBufferPointer<Bool> in
        let buffer = UnsafeMutableBufferPointer<Bool>.allocate(capacity: w.count)
        buffer.initialize(repeating: true)
        return buffer
    }
    defer { for buffer in buffers { buffer.deallocate() } }
    // Borrow every tensor's storage (read-only, nested) for one call.
    func borrow(_ index: Int, _ views: [TensorView<S>]) throws {
        if index == weights.count {
            let outs = zip(weights, buffers).map { MutableTensorView(shape: $0.shape, unchecked: $1) }
            try globalMagnitudeMasks(views, sparsity: sparsity, into: outs)
            return
        }
        try weights[index].withView { view in try borrow(index + 1, views + [view]) }
    }
    try borrow(0, [])
    return try zip(weights, buffers).map { try Tensor(shape: $0.shape, scalars: Array($1)) }
}
