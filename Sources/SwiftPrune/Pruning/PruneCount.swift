/// The number of entries to prune for `sparsity` of `count` entries:
/// `round(sparsity * count)` with ties to even, exactly as Python's `round`
/// (and so `torch.nn.utils.prune`) computes it.
/// - Throws: ``SwiftPruneError`` unless `0 <= sparsity <= 1`.
public func prunedCount(sparsity: Double, of count: Int) throws -> Int {
    guard sparsity >= 0 && sparsity <= 1 else {
        throw SwiftPruneError.value("sparsity must be in [0, 1], got \(sparsity)")
    }
    return min(count, Int((sparsity * Double(count)).rounded(.toNearestOrEven)))
}
