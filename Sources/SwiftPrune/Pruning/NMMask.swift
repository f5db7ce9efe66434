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
            } else if m <= 64 {
                flags[worker] = nmLanes(source, target, groups: range, m: m, n: n, inner: split.inner)
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

/// Large `m` (> 64), any lane stride: per group, a quickselect finds the
/// `(m - n)`-th smallest key; entries below it are pruned, and among entries
/// equal to it the higher indices are pruned first. Returns whether a NaN or
/// Inf was seen.
func nmGeneral<S: MagnitudeOrdered>(
    _ source: UnsafePointer<S>, _ target: UnsafeMutablePointer<Bool>,
    groups: Range<Int>, m: Int, n: Int, inner: Int
) -> Bool {
    var worst: S.MagnitudeKey = 0
    let pruned = m - n
    withUnsafeTemporaryAllocation(of: UInt64.self, capacity: m) { keys in
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: m) { scratch in
            let key = keys.baseAddress!, work = scratch.baseAddress!
            for g in groups {
                let base = g &* m &* inner
                for i in 0 ..< inner {
                    for j in 0 ..< m {
                        let k = source[base &+ j &* inner &+ i].magnitudeKey
                        worst = max(worst, k)
                        key[j] = UInt64(k)
                        work[j] = UInt64(k)
                    }
                    let threshold = quickselect(work, count: m, rank: pruned - 1)
                    var below = 0
                    for j in 0 ..< m where key[j] < threshold { below += 1 }
                    var ties = pruned - below
                    var j = m - 1
                    while j >= 0 {
                        let k = key[j]
                        var keep = k > threshold
                        if k == threshold { if ties > 0 { ties -= 1 } else { keep = true } }
                        target[base &+ j &* inner &+ i] = keep
                        j -= 1
                    }
                }
            }
        }
    }
    return worst >= S.infinityKey
}

/// Ranks by pairwise compares over lanes: `key[j * tile + i]` is entry `j` of
/// lane `i`'s group; `rank[j * tile + i]` receives how many entries of that
/// group beat it (larger key, or equal key and lower index). Every loop runs
/// over contiguous lanes, so it vectorizes.
@inline(__always)
func nmRankLanes<K: FixedWidthInteger>(
    _ key: UnsafePointer<K>, _ rank: UnsafeMutablePointer<Int32>, m: Int, width: Int, tile: Int
) {
    for j in 0 ..< m {
        let kj = key + j * tile, rj = rank + j * tile
        rj.update(repeating: 0, count: width)
        for k in 0 ..< j {
            let kk = key + k * tile
            for i in 0 ..< width { rj[i] &+= kk[i] >= kj[i] ? 1 : 0 }
        }
        for k in (j + 1) ..< m {
            let kk = key + k * tile
            for i in 0 ..< width { rj[i] &+= kk[i] > kj[i] ? 1 : 0 }
        }
    }
}

/// `m <= 64`: groups whose entries are `inner < 8` apart are gathered
/// (transposed) a tile of lanes at a time; for `inner >= 8` each group's `m`
/// rows already are contiguous runs of lanes. Returns whether a NaN or Inf was seen.
func nmLanes<S: MagnitudeOrdered>(
    _ source: UnsafePointer<S>, _ target: UnsafeMutablePointer<Bool>,
    groups: Range<Int>, m: Int, n: Int, inner: Int
) -> Bool {
    let tile = 256
    let limit = Int32(truncatingIfNeeded: n)
    var worst: S.MagnitudeKey = 0
    withUnsafeTemporaryAllocation(of: S.MagnitudeKey.self, capacity: m * tile) { keys in
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: m * tile) { ranks in
            let key = keys.baseAddress!, rank = ranks.baseAddress!
            if inner < 8 {
                // Lanes ℓ = g * inner + i over the worker's groups; entry j of lane ℓ is at
                // (g * m + j) * inner + i. A tile of lanes is gathered (transposed) into rows.
                let lanes = groups.count * inner
                let firstLane = groups.lowerBound * inner
                var l0 = 0
                while l0 < lanes {
                    let width = min(tile, lanes - l0)
                    for t in 0 ..< width {
                        let lane = firstLane + l0 + t
                        let start = (lane / inner) * m * inner + lane % inner
                        for j in 0 ..< m {
                            let k = source[start + j * inner].magnitudeKey
                            key[j * tile + t] = k
                            worst = max(worst, k)
                        }
                    }
                    nmRankLanes(key, rank, m: m, width: width, tile: tile)
                    for t in 0 ..< width {
                        let lane = firstLane + l0 + t
                        let start = (lane / inner) * m * inner + lane % inner
                        for j in 0 ..< m { target[start + j * inner] = rank[j * tile + t] < limit }
                    }
                    l0 += width
                }
                return
            }
            for g in groups {
                let base = g &* m &* inner
                var i0 = 0
                while i0 < inner {
                    let width = min(tile, inner - i0)
                    for j in 0 ..< m {
                        let row = source + base + j * inner + i0, out = key + j * tile
                        for i in 0 ..< width { out[i] = row[i].magnitudeKey }
                        for i in 0 ..< width { worst = max(worst, out[i]) }
                    }
                    nmRankLanes(key, rank, m: m, width: width, tile: tile)
                    for j in 0 ..< m {
                        let out = target + base + j * inner + i0, rj = rank + j * tile
                        for i in 0 ..< width { out[i] = rj[i] < limit }
                    }
                    i0 += width
                }
            }
        }
    }
    return worst >= S.infinityKey
}
