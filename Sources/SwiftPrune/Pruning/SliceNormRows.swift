#if arch(x86_64)
import _Builtin_intrinsics.intel
import SwiftPrunePrefetch
#endif

/// The squared L2 norms of float32 rows laid out one after another, read as
/// four streams far apart: the long-row branch of ``sliceNorms(_:axis:norm:)``
/// (e.g. the row norms of a matrix, axis 0).
///
/// One core reading one sequential stream does not reach this machine's read
/// ceiling: the hardware prefetcher keeps too few lines in flight. The read
/// probe (`python benchmarks/memory_floor.py --read-ceiling`: 42 MB of
/// float32, one thread, median CPU time) measured 1 stream at 15.5 GB/s and 4
/// interleaved streams a quarter of the buffer apart, each prefetched 512
/// bytes ahead (`prefetcht0`), at 29.0 GB/s under real-time priority (13.5 vs
/// 19.9 GB/s at load 9); 8 streams were about as fast (1.41 vs 1.45 ms) and
/// `prefetchnta` slower (1.54 ms).
/// In a C probe, four streams 10 KB apart (adjacent rows, restarting every row)
/// were slower than four 40 KB or more apart. So a chunk of rows is cut into
/// four quarters and row `r` of every quarter is summed in the same loop.
///
/// Every row is summed exactly as ``reduceRow(_:_:_:)`` sums it (the same four
/// 8-lane fused multiply-add accumulators, the same combination and tail), so
/// each value is bit-identical to it; only the order in which rows are read
/// changes.
enum FloatRowStreams {
    /// Rows summed together, one from each quarter of a chunk.
    static let streams = 4
    /// Bytes ahead of each stream that are prefetched (512 measured as good as 256–2048).
    static let prefetchBytes = 512

    /// `values[r] = reduceRow(p + r * length, length, .l2)` for `r` in `0 ..< rows`.
    static func squaredNorms(_ p: UnsafePointer<Float>, rows: Int, length: Int, into values: UnsafeMutablePointer<Double>) {
        let quarter = rows / streams
        var r = 0
        #if arch(x86_64)
        if length >= 32 {
            while r < quarter {
                let q0 = p + r &* length, q1 = q0 + quarter &* length, q2 = q1 + quarter &* length, q3 = q2 + quarter &* length
                let (v0, v1, v2, v3) = fourRows(q0, q1, q2, q3, length)
                values[r] = v0
                values[r &+ quarter] = v1
                values[r &+ 2 &* quarter] = v2
                values[r &+ 3 &* quarter] = v3
                r &+= 1
            }
            r = streams &* quarter
        }
        #endif
        while r < rows {
            values[r] = reduceRow(p + r &* length, length, .l2)
            r &+= 1
        }
    }

    #if arch(x86_64)
    /// The squared L2 norms of four rows of `count` floats, summed together.
    @inline(__always)
    static func fourRows(_ q0: UnsafePointer<Float>, _ q1: UnsafePointer<Float>, _ q2: UnsafePointer<Float>,
                         _ q3: UnsafePointer<Float>, _ count: Int) -> (Double, Double, Double, Double) {
        var a = RowAccumulators(), b = RowAccumulators(), c = RowAccumulators(), d = RowAccumulators()
        var i = 0
        while i &+ 32 <= count {
            a.add(q0, i); b.add(q1, i); c.add(q2, i); d.add(q3, i)
            i &+= 32
        }
        return (a.result(q0, from: i, count), b.result(q1, from: i, count),
                c.result(q2, from: i, count), d.result(q3, from: i, count))
    }

    /// One row's four 8-lane accumulators (``reduceRow(_:_:_:)``'s `b0`…`b3`).
    struct RowAccumulators {
        var s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps()

        /// Adds the squares of `q[i ..< i + 32]`, prefetching the stream ahead.
        @inline(__always)
        mutating func add(_ q: UnsafePointer<Float>, _ i: Int) {
            let at = UnsafeRawPointer(q + i)
            swiftprune_prefetch_read(at + FloatRowStreams.prefetchBytes)
            swiftprune_prefetch_read(at + (FloatRowStreams.prefetchBytes &+ 64))
            let x0 = at.loadUnaligned(as: __m256.self), x1 = at.loadUnaligned(fromByteOffset: 32, as: __m256.self)
            let x2 = at.loadUnaligned(fromByteOffset: 64, as: __m256.self), x3 = at.loadUnaligned(fromByteOffset: 96, as: __m256.self)
            s0 = _mm256_fmadd_ps(x0, x0, s0); s1 = _mm256_fmadd_ps(x1, x1, s1)
            s2 = _mm256_fmadd_ps(x2, x2, s2); s3 = _mm256_fmadd_ps(x3, x3, s3)
        }

        /// The row's sum: the lanes combined and the `count - i` last entries added, as ``reduceRow(_:_:_:)`` does.
        @inline(__always)
        func result(_ q: UnsafePointer<Float>, from i: Int, _ count: Int) -> Double {
            typealias V = SIMD8<Float>
            return squaredL2RowResult(unsafeBitCast(s0, to: V.self), unsafeBitCast(s1, to: V.self),
                                      unsafeBitCast(s2, to: V.self), unsafeBitCast(s3, to: V.self), q, from: i, count)
        }
    }
    #endif
}

/// A squared-L2 row sum from its four 8-lane accumulators and the entries
/// `i ..< count` not yet added: the one place both ``reduceRow(_:_:_:)`` and
/// ``FloatRowStreams`` finish a row, so their results cannot drift apart.
@inline(__always)
func squaredL2RowResult<S: BinaryFloatingPoint & SIMDScalar>(
    _ a0: SIMD8<S>, _ a1: SIMD8<S>, _ a2: SIMD8<S>, _ a3: SIMD8<S>, _ p: UnsafePointer<S>, from start: Int, _ count: Int
) -> Double {
    var result = Double(((a0 + a1) + (a2 + a3)).sum())
    var i = start
    while i < count { let x = Double(p[i]); result += x * x; i += 1 }
    return result
}

/// How many rows of the long-row branch of ``sliceNorms(_:axis:norm:)`` one
/// chunk holds: the chunks are dealt to the workers from a shared counter.
enum LongRowChunks {
    /// At most this many rows per chunk: with one worker every chunk has this
    /// many (the four streams of ``FloatRowStreams`` then 1024 rows apart).
    static let maximumRows = 4096

    /// Rows per chunk for `rowCount` rows and `workers` workers: a multiple of
    /// the four streams (``dealtChunkSize(_:workers:minimum:multiple:)``), at most ``maximumRows``.
    static func rows(rowCount: Int, workers: Int) -> Int {
        Swift.min(maximumRows, dealtChunkSize(rowCount, workers: workers, minimum: 4, multiple: FloatRowStreams.streams))
    }
}
