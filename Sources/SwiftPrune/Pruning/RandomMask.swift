/// Random pruning: exactly `round(sparsity * count)` entries pruned, every
/// subset of that size equally likely.
///
/// The subset is drawn by Floyd's algorithm (one bounded random integer per
/// chosen entry, the mask itself as the set) from ``Xoshiro256StarStar``
/// seeded with `seed`; when more than half are pruned, the kept entries are
/// drawn instead. The same seed always gives the same mask.
/// - Throws: ``SwiftPruneError`` for sparsity outside [0, 1].
public func randomMask(sparsity: Double, seed: UInt64, into mask: UnsafeMutableBufferPointer<Bool>) throws {
    let count = mask.count
    let k = try prunedCount(sparsity: sparsity, of: count)
    guard count > 0 else { return }
    let drawPruned = k <= count - k
    let chosen = drawPruned ? k : count - k
    let background = drawPruned  // value of the entries not drawn
    let base = mask.baseAddress!
    base.update(repeating: background, count: count)
    var generator = Xoshiro256StarStar(seed: seed)
    for j in (count - chosen) ..< count {
        let t = Int(generator.uniform(below: UInt64(j) + 1))
        if base[t] == background { base[t] = !background } else { base[j] = !background }
    }
}

/// The keep-mask of random pruning for a tensor of `shape`; see
/// ``randomMask(sparsity:seed:into:)``.
public func randomMask(shape: [Int], sparsity: Double, seed: UInt64 = 0) throws -> Tensor<Bool> {
    try pruningMaskTensor(shape: shape) { try randomMask(sparsity: sparsity, seed: seed, into: $0.buffer) }
}
