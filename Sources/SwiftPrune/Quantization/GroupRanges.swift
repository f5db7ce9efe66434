/// Per-group reductions and gathers over a ``QuantizationLayout``.
///
/// Every kernel walks the tensor in C order, split into one contiguous flat
/// range per worker, so reads are sequential whatever the layout.
enum GroupWalk {
    static let minimumPerWorker = 1 << 16

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

@inline(__always)
func loadVector<S: SIMDScalar>(_ p: UnsafePointer<S>) -> SIMD8<S> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<S>.self)
}

@inline(__always)
func storeVector<S: SIMDScalar>(_ v: SIMD8<S>, _ p: UnsafeMutablePointer<S>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<S>.self)
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
    let workers = Threading.workerCount(for: total, minimumPerWorker: GroupWalk.minimumPerWorker)
    var lo = [S](repeating: .greatestFiniteMagnitude, count: groups * workers)
    var hi = [S](repeating: -.greatestFiniteMagnitude, count: groups * workers)
    var bad = [S](repeating: 0, count: workers)
    guard total > 0 else {
        return (Array(repeating: 0, count: groups), Array(repeating: 0, count: groups))
    }
    let base = x.baseAddress!
    lo.withUnsafeMutableBufferPointer { loAll in
        hi.withUnsafeMutableBufferPointer { hiAll in
            bad.withUnsafeMutableBufferPointer { badAll in
                let loBase = loAll.baseAddress!, hiBase = hiAll.baseAddress!, badBase = badAll.baseAddress!
                parallelFor(workers: workers) { worker in
                    let myLo = loBase + worker * groups, myHi = hiBase + worker * groups
                    var nonFinite = SIMD8<S>(repeating: 0)
                    GroupWalk.forEachStretch(layout, partitionRange(total, parts: workers, index: worker)) { start, count, group in
                        let p = base + start
                        if layout.inner == 1 {
                            var vLo = SIMD8<S>(repeating: myLo[group]), vHi = SIMD8<S>(repeating: myHi[group])
                            var i = 0
                            while i + 8 <= count {
                                let v = loadVector(p + i)
                                vLo = pointwiseMin(vLo, v)
                                vHi = pointwiseMax(vHi, v)
                                nonFinite += v - v
                                i += 8
                            }
                            var sLo = vLo.min(), sHi = vHi.max()
                            var tail: S = 0
                            while i < count {
                                let v = p[i]
                                sLo = Swift.min(sLo, v)
                                sHi = Swift.max(sHi, v)
                                tail += v - v
                                i += 1
                            }
                            nonFinite[0] += tail
                            myLo[group] = sLo
                            myHi[group] = sHi
                        } else {
                            let gLo = myLo + group, gHi = myHi + group
                            var i = 0
                            while i + 8 <= count {
                                let v = loadVector(p + i)
                                storeVector(pointwiseMin(loadVector(gLo + i), v), gLo + i)
                                storeVector(pointwiseMax(loadVector(gHi + i), v), gHi + i)
                                nonFinite += v - v
                                i += 8
                            }
                            var tail: S = 0
                            while i < count {
                                let v = p[i]
                                gLo[i] = Swift.min(gLo[i], v)
                                gHi[i] = Swift.max(gHi[i], v)
                                tail += v - v
                                i += 1
                            }
                            nonFinite[0] += tail
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
    let workers = Threading.workerCount(for: total, minimumPerWorker: GroupWalk.minimumPerWorker)
    parallelFor(workers: workers) { worker in
        GroupWalk.forEachStretch(layout, partitionRange(total, parts: workers, index: worker)) { start, count, group in
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
