#if arch(x86_64)
import _Builtin_intrinsics.intel
import SwiftPruneGather
import SwiftPrunePrefetch
#endif

/// CSR products with 16-bit column indices, for matrices of at most 65536
/// columns (most linear layers).
///
/// A one-vector product reads each nonzero's value and column index once
/// and nothing else of size: int32 indices make that 8 bytes per nonzero,
/// 16-bit ones 6 (-25%), and the matrix is read from memory when it is not
/// in the last-level cache. The Python `CSRMatrix` stores uint16 indices
/// when its column count allows. Products of several columns run the same
/// blocked kernels as Int32 indices (generic over ``CSRColumnIndex``; the
/// AVX-512 kernel takes Int32 only, so 16-bit indices run the AVX2 kernels
/// there).
extension CSRMatrix {
    /// `y = W @ x` as ``matmul(rows:columns:rowOffsets:columnIndices:values:x:xRows:n:y:)``,
    /// with UInt16 column indices (so `columns` must be at most 65536).
    /// - Throws: ``SwiftPruneError`` as the Int32 entry, or if `columns > 65536`.
    public static func matmul(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices16: UnsafeBufferPointer<UInt16>,
        values: UnsafeBufferPointer<Float>, x: UnsafeBufferPointer<Float>, xRows: Int, n: Int,
        y: UnsafeMutableBufferPointer<Float>
    ) throws {
        try product(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices16, values: values,
                    x: x, xRows: xRows, n: n, y: y)
    }

    /// ``matvec(rows:columns:rowOffsets:columnIndices:values:v:y:)`` with UInt16 indices.
    static func matvec16(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<UInt16>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    ) throws {
        let last = UInt16(truncatingIfNeeded: max(columns, 1) &- 1)
        try matvecDriver(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices) { range in
            matvecRows16(range, rowOffsets: rowOffsets, columnIndices: columnIndices, values: values, v: v, last: last, y: y)
        }
    }

    /// One worker's rows of ``matvec16``; returns nonzero if an index was out of range.
    /// Each step of 32 (or 16) nonzeros first checks its indices against the last column
    /// with two vector operations per 16; a step that fails is flagged and the rest of the
    /// row runs through the clamped scalar loop, so `v` is never read out of bounds.
    /// The entries of `v` are fetched by eight scalar loads per vector (see
    /// `swiftprune_gather8_f32_u16`), four vector partial sums in flight.
    @inline(__always)
    static func matvecRows16(
        _ range: Range<Int>, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<UInt16>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, last: UInt16, y: UnsafeMutablePointer<Float>
    ) -> UInt32 {
        var bad: UInt32 = 0
        @inline(__always) func term(_ t: Int) -> (Float, Float) {
            let c = columnIndices[t]
            bad |= c > last ? 1 : 0
            return (values[t], v[Int(min(c, last))])
        }
        #if arch(x86_64)
        let lastLanes = _mm256_set1_epi16(Int16(bitPattern: last))
        let indexBytes = UnsafeRawPointer(columnIndices), valueBytes = UnsafeRawPointer(values)
        // The 16 indices at t, saturating-minus the last column: nonzero lanes are out of range.
        @inline(__always) func excess(_ t: Int) -> __m256i {
            _mm256_subs_epu16(indexBytes.loadUnaligned(fromByteOffset: t &* 2, as: __m256i.self), lastLanes)
        }
        // Values and entries of `v` for nonzeros t ..< t + 8 (indices already checked).
        @inline(__always) func gathered(_ t: Int) -> (SIMD8<Float>, SIMD8<Float>) {
            (valueBytes.loadUnaligned(fromByteOffset: t &* 4, as: SIMD8<Float>.self),
             swiftprune_gather8_f32_u16(v, columnIndices + t))
        }
        for row in range {
            var t = Int(rowOffsets[row])
            let end = Int(rowOffsets[row &+ 1])
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            var stepsInRange = true
            while t &+ 32 <= end {
                let over = _mm256_or_si256(excess(t), excess(t &+ 16))
                guard _mm256_testz_si256(over, over) != 0 else { stepsInRange = false; break }
                // 32 values (two lines) and 32 indices (one line) ahead, as the Int32 loop.
                let ahead = t &+ streamPrefetchDistance
                swiftprune_prefetch_read(valueBytes + ahead &* 4)
                swiftprune_prefetch_read(valueBytes + (ahead &* 4 &+ 64))
                swiftprune_prefetch_read(indexBytes + ahead &* 2)
                let (w0, x0) = gathered(t), (w1, x1) = gathered(t &+ 8)
                let (w2, x2) = gathered(t &+ 16), (w3, x3) = gathered(t &+ 24)
                a0.addProduct(w0, x0); a1.addProduct(w1, x1); a2.addProduct(w2, x2); a3.addProduct(w3, x3)
                t &+= 32
            }
            if stepsInRange && t &+ 16 <= end {
                let over = excess(t)
                if _mm256_testz_si256(over, over) != 0 {
                    let (w0, x0) = gathered(t), (w1, x1) = gathered(t &+ 8)
                    a0.addProduct(w0, x0); a1.addProduct(w1, x1)
                    t &+= 16
                }
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
            while t &+ 4 <= end {
                let (a0, b0) = term(t), (a1, b1) = term(t &+ 1), (a2, b2) = term(t &+ 2), (a3, b3) = term(t &+ 3)
                s0.addProduct(a0, b0); s1.addProduct(a1, b1); s2.addProduct(a2, b2); s3.addProduct(a3, b3)
                t &+= 4
            }
            while t < end {
                let (a, b) = term(t)
                s0.addProduct(a, b)
                t &+= 1
            }
            y[row] = (s0 + s1) + (s2 + s3)
        }
        return bad
        #endif
    }
}

/// A column index type of ``CSRMatrix``'s kernels: Int32 (SciPy's) or UInt16.
protocol CSRColumnIndex: FixedWidthInteger {
    /// The most columns these indices can address.
    static var columnLimit: Int { get }

    /// Checks that the indices of `rows` are in `0 ..< columns`; returns
    /// whether every row's indices are ascending.
    static func checkRows(
        rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Self>, columns: Int, rows: Range<Int>
    ) throws -> Bool

    /// The one-vector product with these indices (``CSRMatrix/matvec(rows:columns:rowOffsets:columnIndices:values:v:y:)``).
    static func matvec(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<Self>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    ) throws
}

extension Int32: CSRColumnIndex {
    static var columnLimit: Int { Int(Int32.max) }

    static func matvec(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<Int32>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    ) throws {
        try CSRMatrix.matvec(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices,
                             values: values, v: v, y: y)
    }

    static func checkRows(
        rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Int32>, columns: Int, rows: Range<Int>
    ) throws -> Bool {
        try CSRMatrix.checkIndices(rowOffsets: rowOffsets, columnIndices: columnIndices, columns: columns, rows: rows)
    }
}

extension UInt16: CSRColumnIndex {
    static var columnLimit: Int { 65536 }

    static func matvec(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafePointer<UInt16>,
        values: UnsafePointer<Float>, v: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    ) throws {
        try CSRMatrix.matvec16(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices,
                               values: values, v: v, y: y)
    }

    static func checkRows(
        rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<UInt16>, columns: Int, rows: Range<Int>
    ) throws -> Bool {
        guard !rows.isEmpty, let base = columnIndices.baseAddress else { return true }
        // Row by row, 16 indices a step: the largest index (unsigned, so only the upper bound
        // needs checking) and whether some next <= this (a saturating next - this is 0).
        var largest: UInt16 = 0, descending = false
        #if arch(x86_64)
        var largestLanes = _mm256_setzero_si256(), descendingLanes = _mm256_setzero_si256()
        let zero = _mm256_setzero_si256(), bytes = UnsafeRawPointer(base)
        #endif
        for row in rows {
            var t = Int(rowOffsets[row])
            let end = Int(rowOffsets[row &+ 1])
            #if arch(x86_64)
            while t &+ 17 <= end {
                let c = bytes.loadUnaligned(fromByteOffset: t &* 2, as: __m256i.self)
                let next = bytes.loadUnaligned(fromByteOffset: (t &+ 1) &* 2, as: __m256i.self)
                largestLanes = _mm256_max_epu16(largestLanes, c)
                descendingLanes = _mm256_or_si256(descendingLanes, _mm256_cmpeq_epi16(_mm256_subs_epu16(next, c), zero))
                t &+= 16
            }
            #endif
            while t < end {
                largest = Swift.max(largest, base[t])
                if t &+ 1 < end && base[t &+ 1] <= base[t] { descending = true }
                t &+= 1
            }
        }
        #if arch(x86_64)
        let lanes = unsafeBitCast(largestLanes, to: SIMD16<UInt16>.self)
        largest = Swift.max(largest, lanes.max())
        descending = descending || _mm256_testz_si256(descendingLanes, descendingLanes) == 0
        #endif
        if Int(largest) >= columns {
            for t in Int(rowOffsets[rows.lowerBound]) ..< Int(rowOffsets[rows.upperBound]) where Int(base[t]) >= columns {
                throw SwiftPruneError.value("column index \(base[t]) out of range for \(columns) columns")
            }
        }
        return !descending
    }
}

/// CSR columns of one row through an index pointer of either width.
struct IndexedColumns<Index: CSRColumnIndex>: SparseColumns {
    let indices: UnsafePointer<Index>
    @inline(__always) func column(_ t: Int) -> Int { Int(indices[t]) }
}
