/// Per-group reductions and gathers over a ``QuantizationLayout``.
///
/// Every kernel walks the tensor in C order, split into contiguous flat ranges
/// (one per worker, or chunks the workers take in turn), so reads are
/// sequential whatever the layout.
enum QuantizationGroupWalk {
    static let minimumPerWorker = 1 << 16
    /// Calls `body(range)` for consecutive ranges of `0 ..< total`: the whole for
    /// one worker, else chunks that `workers` workers take in turn
    /// (``parallelForChunks(workers:chunks:_:)``: a worker that starts late leaves
    /// its share to the others) of ``dealtChunkSize(_:workers:minimum:multiple:)``
    /// elements, at least 32 Ki so that the two workers quantize gets from 128 Ki
    /// elements (``minimumPerWorker``) still have several. For kernels whose every
    /// element is computed on its own: the result does not depend on who runs a chunk.
    static func forEachChunk(total: Int, workers: Int, _ body: (Range<Int>) -> Void) {
        let chunk = dealtChunkSize(total, workers: workers, minimum: 1 << 15, multiple: 64)
        parallelForRanges(total, chunk: chunk, workers: workers, body)
    }

    /// Calls `runBody(flatStart, count, group)` for the maximal stretches of
    /// `range` whose elements all belong to one group (layouts with
    /// `inner == 1`), or `rowBody(flatStart, count, firstGroup)` for stretches
    /// of a row of `inner` elements whose groups are consecutive (`inner > 1`).
    @inline(__always)
    static func forEachStretch(
        _ layout: QuantizationLayout, _ range: Range<Int>,
        _ body: (_ start: Int, _ count: Int, _ group: Int) -> Void
    ) {
        var i = range.lowerBound
        let end = range.upperBound
        if layout.inner == 1 {
            let run = layout.run, groups = layout.groupsAlong
            while i < end {
                let r = i / run
                let stop = Swift.min(end, (r + 1) * run)
                body(i, stop - i, r % groups)
                i = stop
            }
        } else {
            let inner = layout.inner, run = layout.run, groups = layout.groupsAlong
            while i < end {
                let row = i / inner
                let d = i - row * inner
                let stop = Swift.min(end, (row + 1) * inner)
                let b = (row / run) % groups
                body(i, stop - i, b * inner + d)
                i = stop
            }
        }
    }
}

/// Lane-wise minimum and maximum as a compare and a blend (the stdlib's
/// `pointwiseMin` follows IEEE `minimum` lane by lane and is not inlined);
/// the data are checked for NaN separately.
@inline(__always)
func quantizationLaneMin<S: QuantizationScalar>(_ a: SIMD8<S>, _ b: SIMD8<S>) -> SIMD8<S> {
    var r = a
    for j in 0 ..< 8 { r[j] = b[j] < a[j] ? b[j] : a[j] }
    return r
}

@inline(__always)
func quantizationLaneMax<S: QuantizationScalar>(_ a: SIMD8<S>, _ b: SIMD8<S>) -> SIMD8<S> {
    var r = a
    for j in 0 ..< 8 { r[j] = a[j] < b[j] ? b[j] : a[j] }
    return r
}

@inline(__always)
func quantizationLoad8<S: SIMDScalar>(_ p: UnsafePointer<S>) -> SIMD8<S> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<S>.self)
}

@inline(__always)
func quantizationStore8<S: SIMDScalar>(_ v: SIMD8<S>, _ p: UnsafeMutablePointer<S>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<S>.self)
}

/// The minimum, maximum and `Σ (x - x)` (0 unless NaN/Inf) of `count` values.
@_specialize(where S == Float)
@_specialize(where S == Double)
@inline(never)
func quantizationRangeOfRun<S: QuantizationScalar>(_ p: UnsafePointer<S>, _ count: Int, _ lo: S, _ hi: S) -> (S, S, S) {
    var vLo = SIMD8<S>(repeating: lo), vHi = SIMD8<S>(repeating: hi), bad = SIMD8<S>(repeating: 0)
    var i = 0
    // Two independent chains, to hide the latency of min/max.
    var vLo2 = vLo, vHi2 = vHi, bad2 = bad
    while i + 16 <= count {
        let v = quantizationLoad8(p + i), w = quantizationLoad8(p + i + 8)
        vLo = quantizationLaneMin(vLo, v)
        vHi = quantizationLaneMax(vHi, v)
        bad += v - v
        vLo2 = quantizationLaneMin(vLo2, w)
        vHi2 = quantizationLaneMax(vHi2, w)
        bad2 += w - w
        i += 16
    }
    vLo = quantizationLaneMin(vLo, vLo2)
    vHi = quantizationLaneMax(vHi, vHi2)
    bad += bad2
    while i + 8 <= count {
        let v = quantizationLoad8(p + i)
        vLo = quantizationLaneMin(vLo, v)
        vHi = quantizationLaneMax(vHi, v)
        bad += v - v
        i += 8
    }
    var sLo = lo, sHi = hi, tail: S = 0
    for j in 0 ..< 8 {
        sLo = Swift.min(sLo, vLo[j])
        sHi = Swift.max(sHi, vHi[j])
        tail += bad[j]
    }
    while i < count {
        let v = p[i]
        sLo = Swift.min(sLo, v)
        sHi = Swift.max(sHi, v)
        tail += v - v
        i += 1
    }
    return (sLo, sHi, tail)
}

/// Updates `lo[i]`, `hi[i]` with `p[i]` for `i < count`; returns `Σ (x - x)`.
@_specialize(where S == Float)
@_specialize(where S == Double)
@inline(never)
func quantizationRangeOfRow<S: QuantizationScalar>(
    _ p: UnsafePointer<S>, _ count: Int, _ lo: UnsafeMutablePointer<S>, _ hi: UnsafeMutablePointer<S>
) -> S {
    var bad = SIMD8<S>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        let v = quantizationLoad8(p + i)
        quantizationStore8(quantizationLaneMin(quantizationLoad8(lo + i), v), lo + i)
        quantizationStore8(quantizationLaneMax(quantizationLoad8(hi + i), v), hi + i)
        bad += v - v
        i += 8
    }
    var tail: S = 0
    for j in 0 ..< 8 { tail += bad[j] }
    while i < count {
        let v = p[i]
        lo[i] = Swift.min(lo[i], v)
        hi[i] = Swift.max(hi[i], v)
        tail += v - v
        i += 1
    }
    return tail
}

/// The minimum and maximum of every group of `x` under `layout`.
/// - Throws: ``SwiftPruneError`` if `x` holds NaN or Inf.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func groupRanges<S: QuantizationScalar>(
    _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout
) throws -> (lo: [S], hi: [S]) {
    let total = layout.count, groups = layout.groupCount
    guard x.count == total else {
        throw SwiftPruneError.value("weights have \(x.count) elements, shape \(layout.shape) needs \(total)")
    }
    let workers = Threading.workerCount(for: total, minimumPerWorker: QuantizationGroupWalk.minimumPerWorker)
    var lo = try [S](fallibleRepeating: .greatestFiniteMagnitude, count: groups * workers)
    var hi = try [S](fallibleRepeating: -.greatestFiniteMagnitude, count: groups * workers)
    var bad = [S](repeating: 0, count: workers)
    guard total > 0 else {
        return try ([S](fallibleRepeating: 0, count: groups), [S](fallibleRepeating: 0, count: groups))
    }
    let base = x.baseAddress!
    lo.withUnsafeMutableBufferPointer { loAll in
        hi.withUnsafeMutableBufferPointer { hiAll in
            bad.withUnsafeMutableBufferPointer { badAll in
                let loBase = loAll.baseAddress!, hiBase = hiAll.baseAddress!, badBase = badAll.baseAddress!
                parallelFor(workers: workers) { worker in
                    let myLo = loBase + worker * groups, myHi = hiBase + worker * groups
                    var nonFinite = SIMD8<S>(repeating: 0)
                    QuantizationGroupWalk.forEachStretch(layout, partitionRange(total, parts: workers, index: worker)) { start, count, group in
                        let p = base + start
                        if layout.inner == 1 {
                            let (l, h, b) = quantizationRangeOfRun(p, count, myLo[group], myHi[group])
                            myLo[group] = l
                            myHi[group] = h
                            nonFinite[0] += b
                        } else {
                            nonFinite[0] += quantizationRangeOfRow(p, count, myLo + group, myHi + group)
                        }
                    }
                    badBase[worker] = nonFinite.sum()
                }
            }
        }
    }
    for worker in 0 ..< workers where !(bad[worker] == 0) {
        throw SwiftPruneError.value("weights contain NaN or Inf values")
    }
    var outLo = [S](lo[0 ..< groups]), outHi = [S](hi[0 ..< groups])
    for worker in 1 ..< workers {
        for g in 0 ..< groups {
            outLo[g] = Swift.min(outLo[g], lo[worker * groups + g])
            outHi[g] = Swift.max(outHi[g], hi[worker * groups + g])
        }
    }
    // Empty groups (no elements) are all-zero groups.
    if layout.groupLength == 0 {
        for g in 0 ..< groups { outLo[g] = 0; outHi[g] = 0 }
    }
    return (outLo, outHi)
}

/// Copies `x` into `out` group by group: group `g` occupies
/// `out[g * groupLength ..< (g + 1) * groupLength]`, its elements in C order.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func gatherGroups<S: QuantizationScalar>(
    _ x: UnsafeBufferPointer<S>, layout: QuantizationLayout, into out: UnsafeMutableBufferPointer<S>
) {
    let total = layout.count
    guard total > 0, x.count == total, out.count == total else { return }
    let src = x.baseAddress!, dst = out.baseAddress!
    let length = layout.groupLength, run = layout.run, groups = layout.groupsAlong, inner = layout.inner
    let workers = Threading.workerCount(for: total, minimumPerWorker: QuantizationGroupWalk.minimumPerWorker)
    parallelFor(workers: workers) { worker in
        QuantizationGroupWalk.forEachStretch(layout, partitionRange(total, parts: workers, index: worker)) { start, count, group in
            if inner == 1 {
                // Run r = (a, b): position a * run + (offset in run).
                let r = start / run
                let a = r / groups
                let offset = start - r * run
                (dst + group * length + a * run + offset).update(from: src + start, count: count)
            } else {
                let row = start / inner          // (a, b, c)
                let c = row % run
                let a = row / (run * groups)
                let position = a * run + c
                for i in 0 ..< count { dst[(group + i) * length + position] = src[start + i] }
            }
        }
    }
}
