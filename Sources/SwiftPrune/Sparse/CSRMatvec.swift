import Synchronization

#if arch(x86_64)
import _Builtin_intrinsics.intel
import SwiftPruneGather
import SwiftPrunePrefetch
#endif

/// `y = W @ v` for one vector: its own kernel, not a 1-column GEMM.
///
/// A 1-column product reuses nothing from `v`, so the blocked driver of
/// ``CSRMatrix/matmul(rows:columns:rowOffsets:columnIndices:values:x:xRows:n:y:)``
/// only adds passes over the indices (its cursor scan and a separate range
/// check). Here each row is one streaming pass over its values and indices:
/// the range check is fused into the loop (each step's indices are compared
/// with the last column by a few vector operations before any entry of `v`
/// is loaded; a step that fails is flagged so the call throws, and the rest
/// of its row runs through a clamped scalar loop, so nothing out of bounds is
/// read). On x86-64 the entries of `v` are fetched eight at a time by scalar
/// loads into a vector (`swiftprune_gather8_f32_u16`/`_u32`) into four vector
/// partial sums (32 lanes of fused multiply-adds, the row's last < 8 entries
/// in a scalar sum); elsewhere eight scalar partial sums. Scalar loads beat
/// AVX2 `vpgatherdps` on Zen 3: through Python, 4096², 10% dense, 16-bit
/// indices, interleaved with SciPy on this shared VM (load 8–12), median CPU
/// 1.65–1.76 → 1.36–1.53 ms (1.45–1.53x → 1.73–1.85x SciPy); the summation
/// order, and so every result bit, is the gather kernel's. The values and indices are
/// prefetched ``streamPrefetchDistance`` nonzeros ahead (C model of the 16-bit loop,
/// 4096², 10% dense, interleaved, this VM shared: median 1.61–2.00 → 1.43–1.65 ms,
/// cold and L3-resident matrix alike). The summation order differs from
/// a sequential sum, so results can differ from SciPy's in the last bits.
extension CSRMatrix {
    /// Nonzeros ahead of the one-vector loops whose values and indices are
    /// prefetched: the hardware prefetcher alone keeps too few lines in flight
    /// for two streams read at ~2 cycles per nonzero (512 measured as good as 256–2048).
    static let streamPrefetchDistance = 512

    /// Row chunks per worker of a multi-threaded one-vector product (taken
    /// from a shared counter): 8 keeps a chunk of a 4096² 10%-dense matrix at
    /// ~100k nonzeros (~0.1 ms), far above the cost of taking one.
    static let matvecChunksPerWorker = 8

    /// `y[i] = Σ_t values[t] · v[columnIndices[t]]` over row `i`'s entries,
    /// rows split between threads by nonzero count.
    /// - Throws: ``SwiftPruneError`` if a column index is outside `0 ..< columns`.
    static func matvec(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<Int32>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    ) throws {
        let last = UInt32(truncatingIfNeeded: max(columns, 1) &- 1)
        try matvecDriver(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices) { range in
            matvecRows(range, rowOffsets: rowOffsets, columnIndices: columnIndices, values: values, v: v, last: last, y: y)
        }
    }

    /// The threading and error handling of both one-vector products (Int32
    /// and UInt16 indices): `rowsKernel(range)` computes a range's outputs and
    /// returns nonzero if it met an index past the last column (never read).
    ///
    /// With several workers the rows are cut into ``matvecChunksPerWorker``
    /// chunks per worker of equal nonzero count, which the workers take in
    /// turn from a shared counter: on a shared machine a worker whose core is
    /// busy starts late or is preempted, and with a fixed half each the call
    /// waits for all of that worker's half; here the others take what it has
    /// not started. (On the loaded VM, 4096² 10% dense, a 2-thread call took
    /// 1.4–3.1 ms wall against 1.4–1.8 ms at 1 thread, CPU time equal; the
    /// fixed split and this one were not told apart within that noise.) Each
    /// row is still summed by one worker with one kernel, so the bits do not
    /// depend on the thread count or on which worker took which chunk.
    /// - Throws: ``SwiftPruneError`` naming the first index outside `0 ..< columns`.
    @inline(__always)
    static func matvecDriver<Index: CSRColumnIndex>(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<Index>,
        rowsKernel: (Range<Int>) -> UInt32
    ) throws {
        guard rows > 0 else { return }
        let nonzeros = Int(rowOffsets[rows])
        // About 64k multiply-adds per worker before a second thread pays for its start-up: measured,
        // not guessed (issue 18, round 10; `chrt -f 10 python benchmarks/memory_threads.py`, real-time
        // priority standing in for a quiet machine, seven runs, 1 → 2 threads, q1 wall (CPU cost)):
        // 90%-sparse 1280² (165k, just past the threshold) 1.10–1.47x, median 1.36x (1.19–1.74x CPU),
        // 1448² 1.24–1.50x, 2048² 1.25–1.54x; one run: 4096² 1.86x (1.06x CPU), 8192² 1.86x (1.06x).
        // The second thread shortens the calls it is given by the rule of MemoryBoundWorkers (≥ 20% in
        // the median run), so the threshold stays.
        let workers = Threading.workerCount(for: nonzeros &+ rows, minimumPerWorker: 1 << 16)
        var outOfRange: UInt32 = 0
        if workers == 1 {
            outOfRange = rowsKernel(0 ..< rows)
        } else {
            let chunks = workers &* matvecChunksPerWorker
            let flags = Atomic<UInt32>(0)
            parallelForChunks(workers: workers, chunks: chunks) { _, chunk in
                let bad = rowsKernel(balancedRows(rowOffsets, rows: rows, parts: chunks, index: chunk))
                if bad != 0 { flags.bitwiseOr(bad, ordering: .relaxed) }
            }
            outOfRange = flags.load(ordering: .relaxed)
        }
        if columns == 0 && nonzeros > 0 || outOfRange != 0 {
            // Find the culprit for the message (the slow path of an error only).
            for position in 0 ..< nonzeros where columnIndices[position] < 0 || Int(columnIndices[position]) >= columns {
                throw SwiftPruneError.value("column index \(columnIndices[position]) out of range for \(columns) columns")
            }
        }
    }

    /// One worker's rows of ``matvec``; returns nonzero if an index was out of range.
    @inline(__always)
    static func matvecRows(
        _ range: Range<Int>, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<Int32>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, last: UInt32, y: UnsafeMutablePointer<Float>
    ) -> UInt32 {
        var bad: UInt32 = 0
        @inline(__always) func term(_ t: Int) -> (Float, Float) {
            let c = UInt32(bitPattern: columnIndices[t])
            bad |= c > last ? 1 : 0
            return (values[t], v[Int(min(c, last))])
        }
        #if arch(x86_64)
        // Each step first checks its indices against the last column (unsigned: a negative
        // index is huge), 8 per vector; a step that fails is flagged and the rest of the row
        // runs through the clamped scalar loop, so `v` is never read out of bounds.
        let lastLanes = _mm256_set1_epi32(Int32(bitPattern: last))
        let indexBytes = UnsafeRawPointer(columnIndices), valueBytes = UnsafeRawPointer(values)
        let unsignedIndices = indexBytes.assumingMemoryBound(to: UInt32.self)
        // Nonzero lanes where one of the 8 indices at t is past the last column.
        @inline(__always) func excess(_ t: Int) -> __m256i {
            let indices = indexBytes.loadUnaligned(fromByteOffset: t &* 4, as: __m256i.self)
            return _mm256_xor_si256(indices, _mm256_min_epu32(indices, lastLanes))
        }
        // Values and entries of `v` for nonzeros t ..< t + 8 (indices already checked).
        @inline(__always) func gathered(_ t: Int) -> (SIMD8<Float>, SIMD8<Float>) {
            (valueBytes.loadUnaligned(fromByteOffset: t &* 4, as: SIMD8<Float>.self),
             swiftprune_gather8_f32_u32(v, unsignedIndices + t))
        }
        for row in range {
            var t = Int(rowOffsets[row])
            let end = Int(rowOffsets[row &+ 1])
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            var stepsInRange = true
            while t &+ 32 <= end {
                let over = _mm256_or_si256(_mm256_or_si256(excess(t), excess(t &+ 8)),
                                           _mm256_or_si256(excess(t &+ 16), excess(t &+ 24)))
                guard _mm256_testz_si256(over, over) != 0 else { stepsInRange = false; break }
                // 32 values (two lines) and 32 indices (two lines), a prefetch never faults.
                let ahead = t &+ streamPrefetchDistance
                swiftprune_prefetch_read(valueBytes + ahead &* 4)
                swiftprune_prefetch_read(valueBytes + (ahead &* 4 &+ 64))
                swiftprune_prefetch_read(indexBytes + ahead &* 4)
                swiftprune_prefetch_read(indexBytes + (ahead &* 4 &+ 64))
                let (w0, x0) = gathered(t), (w1, x1) = gathered(t &+ 8)
                let (w2, x2) = gathered(t &+ 16), (w3, x3) = gathered(t &+ 24)
                a0.addProduct(w0, x0); a1.addProduct(w1, x1); a2.addProduct(w2, x2); a3.addProduct(w3, x3)
                t &+= 32
            }
            while stepsInRange && t &+ 8 <= end {
                let over = excess(t)
                guard _mm256_testz_si256(over, over) != 0 else { break }
                let (w0, x0) = gathered(t)
                a0.addProduct(w0, x0)
                t &+= 8
            }
            var tail: Float = 0
            while t < end {
                let (a, b) = term(t)
                tail.addProduct(a, b)
                t &+= 1
            }
            let lanes = (a0 + a1) + (a2 + a3)
            y[row] = (lanes.lowHalf + lanes.highHalf).sum() + tail
        }
        return bad
        #else
        for row in range {
            var t = Int(rowOffsets[row])
            let end = Int(rowOffsets[row &+ 1])
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var s4: Float = 0, s5: Float = 0, s6: Float = 0, s7: Float = 0
            while t &+ 8 <= end {
                let (a0, b0) = term(t), (a1, b1) = term(t &+ 1), (a2, b2) = term(t &+ 2), (a3, b3) = term(t &+ 3)
                let (a4, b4) = term(t &+ 4), (a5, b5) = term(t &+ 5), (a6, b6) = term(t &+ 6), (a7, b7) = term(t &+ 7)
                s0.addProduct(a0, b0); s1.addProduct(a1, b1); s2.addProduct(a2, b2); s3.addProduct(a3, b3)
                s4.addProduct(a4, b4); s5.addProduct(a5, b5); s6.addProduct(a6, b6); s7.addProduct(a7, b7)
                t &+= 8
            }
            while t < end {
                let (a, b) = term(t)
                s0.addProduct(a, b)
                t &+= 1
            }
            y[row] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        }
        return bad
        #endif
    }
}
