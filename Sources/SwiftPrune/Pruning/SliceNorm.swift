#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// The norm that scores a slice of a tensor in structured pruning.
public enum SliceNorm: Sendable, Equatable {
    /// Sum of `|w|`.
    case l1
    /// Square root of the sum of `w²`.
    case l2
    /// Largest `|w|`.
    case infinity

    /// The norm of order `p`: 1, 2 or `+infinity`.
    /// - Throws: ``SwiftPruneError`` for any other order.
    public init(order p: Double) throws {
        switch p {
        case 1: self = .l1
        case 2: self = .l2
        case .infinity: self = .infinity
        default: throw SwiftPruneError.value("norm must be 1, 2 or inf, got \(p)")
        }
    }
}

/// The `norm` of every slice of `weights` along `axis`, each taken over all
/// the other axes (as `torch.nn.utils.prune.ln_structured` scores channels):
/// `result[l]` is the norm of `weights[..., l, ...]`. Slices laid out as long
/// contiguous rows are summed in 32 lanes of the element type (float32 lanes
/// for `Float`) combined in `Double`; short rows accumulate element-wise in
/// `Double`. An empty slice has norm 0.
/// - Throws: ``SwiftPruneError`` for a scalar, an axis out of range or NaN/Inf
///   weights.
@_specialize(where S == Float)
@_specialize(where S == Double)
public func sliceNorms<S: MagnitudeOrdered & SIMDScalar>(
    _ weights: TensorView<S>, axis: Int, norm: SliceNorm
) throws -> [Double] {
    let split = try AxisSplit(shape: weights.shape, axis: axis)
    let length = split.length, inner = split.inner, outer = split.outer
    var norms = try [Double](fallibleRepeating: 0, count: length)
    guard weights.count > 0 else { return norms }
    let source = weights.buffer.baseAddress!
    let total = weights.count
    // One worker for small tensors, where a second did not shorten the call (MemoryBoundWorkers).
    let bytes = total * MemoryLayout<S>.stride
    @inline(__always) func workerCount(minimumPerWorker: Int) -> Int {
        MemoryBoundWorkers.count(size: bytes, threshold: MemoryBoundWorkers.structuredBytes, work: total,
                                 minimumPerWorker: minimumPerWorker)
    }
    if norm == .infinity {
        // NaN is invisible to max(); look for it (and Inf) on the bit patterns.
        let workers = workerCount(minimumPerWorker: 1 << 18)
        var worst = [S.MagnitudeKey](repeating: 0, count: workers)
        worst.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            parallelFor(workers: workers) { worker in
                var w: S.MagnitudeKey = 0
                for i in partitionRange(total, parts: workers, index: worker) { w = max(w, source[i].magnitudeKey) }
                o[worker] = w
            }
        }
        guard worst.allSatisfy({ $0 < S.infinityKey }) else {
            throw SwiftPruneError.value("weights contain NaN or Inf values")
        }
    }
    if inner == 1 && outer < 4 {
        // A few rows of single entries (a 1-D tensor): each slice is one value per row.
        norms.withUnsafeMutableBufferPointer { out in
            for o in 0 ..< outer {
                let p = source + o * length
                switch norm {
                case .l1, .l2: for l in 0 ..< length { let x = Double(p[l]); out[l] += norm == .l1 ? x.magnitude : x * x }
                case .infinity: for l in 0 ..< length { out[l] = max(out[l], Double(p[l].magnitude)) }
                }
            }
        }
    } else if inner >= 64 || outer < 4 {
        // Long contiguous rows (or too few planes to be worth a plane buffer each):
        // reduce each (o, l) row with SIMD into rowValues[row], then add the rows into
        // norms[l] in row order on the calling thread. The rows are dealt in chunks from
        // a shared counter (a late worker costs only the chunks it did not take), and as
        // the sums are added in row order whoever computed them, the norms are the same
        // bit for bit at every worker count (and equal to the one-worker result of the
        // per-worker partial sums used before). Cost: one Double per row (a row holds 64
        // or more elements, or the tensor has fewer than 4 planes).
        let rows = outer * length
        let workers = workerCount(minimumPerWorker: 1 << 16)
        let chunk = LongRowChunks.rows(rowCount: rows, workers: workers)
        var rowValues = try [Double](fallibleRepeating: 0, count: rows)
        rowValues.withUnsafeMutableBufferPointer { all in
            let values = all.baseAddress!
            parallelForRanges(rows, chunk: chunk, workers: workers) { range in
                let start = range.lowerBound, count = range.count
                if S.self == Float.self && norm == .l2 {
                    // Float32 L2: four rows at once (FloatRowStreams), each bit-identical to reduceRow.
                    let first = UnsafeRawPointer(source + start * inner).assumingMemoryBound(to: Float.self)
                    FloatRowStreams.squaredNorms(first, rows: count, length: inner, into: values + start)
                } else {
                    for k in 0 ..< count { values[start + k] = reduceRow(source + (start + k) * inner, inner, norm) }
                }
            }
        }
        norms.withUnsafeMutableBufferPointer { out in
            let p = out.baseAddress!
            for row in 0 ..< rows {
                let l = row % length, value = rowValues[row]
                p[l] = norm == .infinity ? Swift.max(p[l], value) : p[l] + value
            }
        }
    } else {
        // Short rows: accumulate whole (length * inner) planes over `outer`, element-wise.
        let plane = length * inner
        let workers = workerCount(minimumPerWorker: max(1 << 16, 4 * plane))
        var partial = try [Double](fallibleRepeating: 0, count: workers * plane)
        partial.withUnsafeMutableBufferPointer { all in
            let base = all.baseAddress!
            parallelFor(workers: workers) { worker in
                let acc = base + worker * plane
                let planes = partitionRange(outer, parts: workers, index: worker)
                if S.self == Float.self && norm != .infinity {
                    // Float32 L1/L2: four planes per pass over the accumulator (SliceNormPlanes.swift).
                    let first = UnsafeRawPointer(source + planes.lowerBound * plane).assumingMemoryBound(to: Float.self)
                    accumulateFloatPlanes(first, rows: planes.count, plane: plane, l1: norm == .l1, into: acc)
                    return
                }
                for o in planes {
                    let p = source + o * plane
                    switch norm {
                    case .l1: for j in 0 ..< plane { acc[j] += Double(p[j].magnitude) }
                    case .l2: for j in 0 ..< plane { let x = Double(p[j]); acc[j] += x * x }
                    case .infinity: for j in 0 ..< plane { acc[j] = max(acc[j], Double(p[j].magnitude)) }
                    }
                }
            }
        }
        for worker in 0 ..< workers {
            for l in 0 ..< length {
                for i in 0 ..< inner {
                    let value = partial[worker * plane + l * inner + i]
                    norms[l] = norm == .infinity ? max(norms[l], value) : norms[l] + value
                }
            }
        }
    }
    var finite = true
    norms.withUnsafeMutableBufferPointer { out in
        guard let p = out.baseAddress else { return }
        if norm == .l2 { for l in 0 ..< length { p[l] = p[l].squareRoot() } }
        // Inf and NaN are the patterns with every exponent bit set (integer ops vectorize).
        var special: UInt64 = 0
        for l in 0 ..< length { special |= (~p[l].bitPattern & 0x7FF0_0000_0000_0000) == 0 ? 1 : 0 }
        finite = special == 0
    }
    guard finite else {
        throw SwiftPruneError.value("weights contain NaN or Inf values (or their norms overflow)")
    }
    return norms
}

/// The L1 sum, squared-L2 sum or max of `|x|` over `count` contiguous values,
/// with 32 SIMD lanes in flight.
@inline(__always)
func reduceRow<S: BinaryFloatingPoint & SIMDScalar>(_ p: UnsafePointer<S>, _ count: Int, _ norm: SliceNorm) -> Double {
    typealias V = SIMD8<S>
    var a0 = V(), a1 = V(), a2 = V(), a3 = V()
    var i = 0
    let raw = UnsafeRawPointer(p)
    let stride = MemoryLayout<S>.stride
    @inline(__always) func load(_ j: Int) -> V { raw.loadUnaligned(fromByteOffset: j * stride, as: V.self) }
    @inline(__always) func abs(_ x: V) -> V { pointwiseMax(x, -x) }
    #if arch(x86_64)
    if S.self == Float.self && norm == .l2 {
        // The same four lanes and fused multiply-adds as the generic loop below (bit-identical sums),
        // on a Float pointer: the generic loop checked each byte offset for overflow and spilled its
        // accumulators every step, and ran 1.3x a bare read of the rows (4096 x 2560, axis 0).
        let f = UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
        var b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0
        while i &+ 32 <= count {
            let q = UnsafeRawPointer(f + i)
            let x0 = q.loadUnaligned(as: __m256.self), x1 = q.loadUnaligned(fromByteOffset: 32, as: __m256.self)
            let x2 = q.loadUnaligned(fromByteOffset: 64, as: __m256.self), x3 = q.loadUnaligned(fromByteOffset: 96, as: __m256.self)
            b0 = _mm256_fmadd_ps(x0, x0, b0); b1 = _mm256_fmadd_ps(x1, x1, b1)
            b2 = _mm256_fmadd_ps(x2, x2, b2); b3 = _mm256_fmadd_ps(x3, x3, b3)
            i &+= 32
        }
        a0 = unsafeBitCast(b0, to: V.self); a1 = unsafeBitCast(b1, to: V.self)
        a2 = unsafeBitCast(b2, to: V.self); a3 = unsafeBitCast(b3, to: V.self)
    }
    #endif
    switch norm {
    case .l1:
        while i + 32 <= count {
            a0 += abs(load(i)); a1 += abs(load(i + 8)); a2 += abs(load(i + 16)); a3 += abs(load(i + 24))
            i += 32
        }
    case .l2:
        while i + 32 <= count {
            let x0 = load(i), x1 = load(i + 8), x2 = load(i + 16), x3 = load(i + 24)
            a0.addProduct(x0, x0); a1.addProduct(x1, x1); a2.addProduct(x2, x2); a3.addProduct(x3, x3)
            i += 32
        }
    case .infinity:
        while i + 32 <= count {
            a0 = pointwiseMax(a0, abs(load(i))); a1 = pointwiseMax(a1, abs(load(i + 8)))
            a2 = pointwiseMax(a2, abs(load(i + 16))); a3 = pointwiseMax(a3, abs(load(i + 24)))
            i += 32
        }
    }
    var result: Double
    switch norm {
    case .infinity:
        result = Double(pointwiseMax(pointwiseMax(a0, a1), pointwiseMax(a2, a3)).max())
        while i < count { result = max(result, Double(p[i].magnitude)); i += 1 }
    case .l1:
        result = Double(((a0 + a1) + (a2 + a3)).sum())
        while i < count { result += Double(p[i].magnitude); i += 1 }
    case .l2:
        result = squaredL2RowResult(a0, a1, a2, a3, p, from: i, count)
    }
    return result
}
