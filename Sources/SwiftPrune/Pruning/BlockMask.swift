/// Block pruning of a 2-D weight: the matrix is tiled by `blockRows ×
/// blockColumns` blocks from the top-left corner, each block is scored by
/// the mean `|w|` of its entries (a partial block at the bottom or right
/// edge by the mean over its own entries), and the `round(sparsity *
/// blockCount)` lowest-scored blocks are pruned entirely, the lower block
/// index (row-major over blocks) first among equal scores.
/// - Throws: ``SwiftPruneError`` unless `weights` is 2-D, the block sides are
///   positive and `sparsity` is in [0, 1]; for NaN/Inf weights; for a mask
///   of another size.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func blockMask<S: MagnitudeOrdered>(
    _ weights: TensorView<S>, sparsity: Double, blockRows: Int, blockColumns: Int,
    into mask: MutableTensorView<Bool>
) throws {
    try checkMaskMatches(mask, weights)
    guard weights.rank == 2 else {
        throw SwiftPruneError.value("block pruning needs a 2-D weight, got shape \(weights.shape)")
    }
    guard blockRows >= 1 && blockColumns >= 1 else {
        throw SwiftPruneError.value("block sides must be >= 1, got (\(blockRows), \(blockColumns))")
    }
    let rows = weights.shape[0], columns = weights.shape[1]
    let gridRows = rows / blockRows + (rows % blockRows == 0 ? 0 : 1)
    let gridColumns = columns / blockColumns + (columns % blockColumns == 0 ? 0 : 1)
    let blocks = gridRows * gridColumns  // <= rows * columns
    let k = try prunedCount(sparsity: sparsity, of: blocks)
    guard weights.count > 0 else { return }
    let source = weights.buffer.baseAddress!, target = mask.buffer.baseAddress!

    // Scores: sums of |w| per block row band, then divided by each block's size.
    var scores = try [Double](fallibleRepeating: 0, count: blocks)
    let workers = Threading.workerCount(for: weights.count, minimumPerWorker: 1 << 16)
    var bad = [Bool](repeating: false, count: workers)
    scores.withUnsafeMutableBufferPointer { scoreBuffer in
        bad.withUnsafeMutableBufferPointer { badBuffer in
            let score = scoreBuffer.baseAddress!, flags = badBuffer.baseAddress!
            parallelFor(workers: workers) { worker in
                var worst: S.MagnitudeKey = 0
                for band in partitionRange(gridRows, parts: workers, index: worker) {
                    let r0 = band * blockRows, r1 = min(rows, r0 + blockRows)
                    let bandScores = score + band * gridColumns
                    for r in r0 ..< r1 {
                        let row = source + r * columns
                        for b in 0 ..< gridColumns {
                            let c0 = b * blockColumns, c1 = min(columns, c0 + blockColumns)
                            var sum = 0.0
                            for c in c0 ..< c1 {
                                let x = row[c]
                                worst = max(worst, x.magnitudeKey)
                                sum += Double(x.magnitude)
                            }
                            bandScores[b] += sum
                        }
                    }
                    for b in 0 ..< gridColumns {
                        let c0 = b * blockColumns, c1 = min(columns, c0 + blockColumns)
                        bandScores[b] /= Double((r1 - r0) * (c1 - c0))
                    }
                }
                flags[worker] = worst >= S.infinityKey
            }
        }
    }
    guard !bad.contains(true) else { throw SwiftPruneError.value("weights contain NaN or Inf values") }

    var keepBlock = try [Bool](fallibleRepeating: true, count: blocks)
    try scores.withUnsafeBufferPointer { s in
        try keepBlock.withUnsafeMutableBufferPointer { keep in
            try writeMagnitudeMasks(SegmentedBuffer([s]), prune: k, into: [keep])
        }
    }
    keepBlock.withUnsafeBufferPointer { keepBuffer in
        let keep = keepBuffer.baseAddress!
        parallelFor(workers: workers) { worker in
            for r in partitionRange(rows, parts: workers, index: worker) {
                let flags = keep + (r / blockRows) * gridColumns
                let row = target + r * columns
                for b in 0 ..< gridColumns {
                    let c0 = b * blockColumns, c1 = min(columns, c0 + blockColumns)
                    (row + c0).update(repeating: flags[b], count: c1 - c0)
                }
            }
        }
    }
}

/// The keep-mask of block pruning; see ``blockMask(_:sparsity:blockRows:blockColumns:into:)``.
public func blockMask<S: MagnitudeOrdered>(
    _ weights: Tensor<S>, sparsity: Double, blockRows: Int = 1, blockColumns: Int = 4
) throws -> Tensor<Bool> {
    try pruningMaskTensor(shape: weights.shape) { out in
        try weights.withView {
            try blockMask($0, sparsity: sparsity, blockRows: blockRows, blockColumns: blockColumns, into: out)
        }
    }
}
