/// N:M semi-structured sparsity: in every run of `m` consecutive entries
/// along `axis`, the `n` of largest `|w|` are kept (`true`) and the other
/// `m - n` pruned; among equal magnitudes the lower index is kept. 2:4 along
/// the input dimension is the pattern sparse tensor cores accelerate.
///
/// - Parameters:
///   - n: kept entries per group, `1 <= n < m`.
///   - m: group length; `weights.shape[axis]` must be a multiple of it.
///   - axis: the axis the groups run along (negative counts from the end).
/// - Throws: ``SwiftPruneError`` for a scalar, an axis out of range,
///   `n`/`m` out of range, a length not divisible by `m`, NaN/Inf weights, or
///   a mask of another size.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func nmMask<S: MagnitudeOrdered>(
    _ weights: TensorView<S>, n: Int, m: Int, axis: Int, into mask: MutableTensorView<Bool>
) throws {
    try checkMaskMatches(mask, weights)
    guard m >= 1 else { throw SwiftPruneError.value("m must be >= 1, got \(m)") }
    guard n >= 1 && n < m else { throw SwiftPruneError.value("n must satisfy 1 <= n < m = \(m), got n = \(n)") }
    let split = try AxisSplit(shape: weights.shape, axis: axis)
    guard split.length % m == 0 else {
        throw SwiftPruneError.value(
            "w.shape[\(split.axis)] = \(split.length) is not a multiple of m = \(m)")
    }
    let groups = split.outer * (split.length / m)  // groups per lane
    let total = weights.count
    guard total > 0 else { return }
    let source = weights.buffer.baseAddress!, target = mask.buffer.baseAddress!
    let workers = Threading.workerCount(for: total, minimumPerWorker: 1 << 16)
    var badPerWorker = [Bool](repeating: false, count: workers)
    badPerWorker.withUnsafeMutableBufferPointer { badFlags in
        let flags = badFlags.baseAddress!
        parallelFor(workers: workers) { worker in
            let range = partitionRange(groups, parts: workers, index: worker)
            if split.inner == 1 && m == 4 {
                flags[worker] = nm4Contiguous(source + range.lowerBound * 4, target + range.lowerBound * 4,
                                              groups: range.count, n: n)
            } else {
                flags[worker] = nmGeneral(source, target, groups: range, m: m, n: n, inner: split.inner)
            }
        }
    }
    if badPerWorker.contains(true) {
        throw SwiftPruneError.value("weights contain NaN or Inf values")
    }
}

/// The keep-mask of `weights` with `n` of every `m` entries kept along `axis`;
/// see ``nmMask(_:n:m:axis:into:)``.
public func nmMask<S: MagnitudeOrdered>(_ weights: Tensor<S>, n: Int = 2, m: Int = 4, axis: Int = -1) throws -> Tensor<Bool> {
    try pruningMaskTensor(shape: weights.shape) { out in
        try weights.withView { try nmMask($0, n: n, m: m, axis: axis, into: out) }
    }
}

/// Groups of 4 contiguous entries: ranks from six comparisons, no branches.
/// Returns whether a NaN or Inf was seen.
@inline(__always)
func nm4Contiguous<S: MagnitudeOrdered>(
    _ source: UnsafePointer<S>, _ target: UnsafeMutablePointer<Bool>, groups: Int, n: Int
) -> Bool {
    var worst: S.MagnitudeKey = 0
    for g in 0 ..< groups {
        let p = source + 4 &* g
        let a = p[0].magnitudeKey, b = p[1].magnitudeKey, c = p[2].magnitudeKey, d = p[3].magnitudeKey
        worst = max(worst, max(max(a, b), max(c, d)))
        // rank(j) = #{k : key_k > key_j, or key_k == key_j and k < j}; kept iff rank < n.
        let ab = a >= b ? 1 : 0, ac = a >= c ? 1 : 0, ad = a >= d ? 1 : 0
        let bc = b >= c ? 1 : 0, bd = b >= d ? 1 : 0, cd = c >= d ? 1 : 0
        let r0 = (1 - ab) + (1 - ac) + (1 - ad)
        let r1 = ab + (1 - bc) + (1 - bd)
        let r2 = ac + bc + (1 - cd)
        let r3 = ad + bd + cd
        let q = target + 4 &* g
        q[0] = r0 < n; q[1] = r1 < n; q[2] = r2 < n; q[3] = r3 < n
    }
    return worst >= S.infinityKey
}

/// Any `m`, any lane stride `inner`: ranks by pairwise comparison for small
/// `m`, by sorting `(key, index)` for large `m`. Returns whether a NaN or Inf was seen.
func nmGeneral<S: MagnitudeOrdered>(
    _ source: UnsafePointer<S>, _ target: UnsafeMutablePointer<Bool>,
    groups: Range<Int>, m: Int, n: Int, inner: Int
) -> Bool {
    var worst: S.MagnitudeKey = 0
    withUnsafeTemporaryAllocation(of: S.MagnitudeKey.self, capacity: m) { keys in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: m) { orderBuffer in
            var order = orderBuffer
            for g in groups {
                let base = g &* m &* inner
                for i in 0 ..< inner {
                    for j in 0 ..< m {
                        let key = source[base &+ j &* inner &+ i].magnitudeKey
                        keys[j] = key
                        worst = max(worst, key)
                    }
                    if m <= 32 {
                        for j in 0 ..< m {
                            let kj = keys[j]
                            var rank = 0
                            for k in 0 ..< j where keys[k] >= kj { rank &+= 1 }
                            for k in (j + 1) ..< m where keys[k] > kj { rank &+= 1 }
                            target[base &+ j &* inner &+ i] = rank < n
                        }
                    } else {
                        for j in 0 ..< m { order[j] = j }
                        // Largest key first, lower index first among equals.
                        order.sort { keys[$0] != keys[$1] ? keys[$0] > keys[$1] : $0 < $1 }
                        for r in 0 ..< m { target[base &+ order[r] &* inner &+ i] = r < n }
                    }
                }
            }
        }
    }
    return worst >= S.infinityKey
}
