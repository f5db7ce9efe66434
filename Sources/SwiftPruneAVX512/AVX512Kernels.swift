#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

// This module is compiled for x86-64-v4 (AVX-512) on x86-64 and its
// functions must only run after `CPUFeatures.hasAVX512` said yes (SwiftPrune
// decides; this module never runs on its own).
//
// Rules that keep AVX-512 instructions inside this module (checked by
// python/tests/test_avx512.py on the built library):
// - Only raw pointers, integers, floats and SIMD types (whose operations are
//   transparent, always inlined). No Array, String, closures, Dispatch, and no
//   call that could make the compiler emit a specialization of a generic
//   standard-library function (`min`, `max`, ranges, `for ... in`): such a
//   specialization is a shared (weak) symbol, and the linker could pick this
//   module's AVX-512 copy for every other module too.
// - The entry points are `@inline(never)`, so no client inlines their body
//   into code built for x86-64-v3.
// - Generic helpers are private to this module, so their specializations
//   carry this module's mangled name.

/// Kernels built for AVX-512, called by SwiftPrune after a run-time check.
/// Each computes exactly what its portable twin in SwiftPrune computes, in the
/// same order of operations (the results are bit-identical).
public enum AVX512Kernels {
    /// `sparseRowTimesDense` of SwiftPrune (Sparse/SparseRowKernel.swift) for a
    /// chunk of CSR rows over one block of `x`: for each row `r` in
    /// `0 ..< rowCount`, its nonzeros from `cursors[r]` while
    /// `t < rowEnds[r]` and `indices[t] < limit`; `cursors[r]` is advanced
    /// past them. Row `r` goes to `y + r · yStride` (`width` values).
    @inline(never)
    public static func csrRows(
        rowCount: Int, values: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
        cursors: UnsafeMutablePointer<Int>, rowEnds: UnsafePointer<Int64>, limit: Int32,
        x: UnsafePointer<Float>, stride: Int, columnBase: Int, width: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, accumulate: Bool
    ) {
        var r = 0
        while r < rowCount {
            let start = cursors[r], rowEnd = Int(rowEnds[r])
            var end = start
            while end < rowEnd && indices[end] < limit { end &+= 1 }
            cursors[r] = end
            rowTimesDense(values: values + start, columns: CSRColumns(indices: indices + start), count: end &- start,
                          x: x, stride: stride, columnBase: columnBase, width: width, y: y + r &* yStride,
                          accumulate: accumulate)
            r &+= 1
        }
    }

    /// The same for a chunk of N:M rows: row `r`'s values and group indices
    /// start at `values + r · perRow`, `indices + r · perRow`; it has `count`
    /// of them, in groups of `n` (`shift = log2(n)` or -1), the first group at
    /// column `firstColumn`.
    @inline(never)
    public static func nmRows(
        rowCount: Int, values: UnsafePointer<Float>, indices: UnsafePointer<UInt8>, perRow: Int,
        n: Int, m: Int, shift: Int, firstColumn: Int, count: Int,
        x: UnsafePointer<Float>, stride: Int, columnBase: Int, width: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, accumulate: Bool
    ) {
        var r = 0
        while r < rowCount {
            let offset = r &* perRow
            rowTimesDense(values: values + offset,
                          columns: GroupColumns(indices: indices + offset, n: n, m: m, shift: shift, firstColumn: firstColumn),
                          count: count, x: x, stride: stride, columnBase: columnBase, width: width,
                          y: y + r &* yStride, accumulate: accumulate)
            r &+= 1
        }
    }

    /// `QuantizedMatmul.microKernel` of SwiftPrune: four int8 weight rows
    /// times sixteen packed activation columns (64 bytes per group of four
    /// depths: columns 0–7 then 8–15, four consecutive depths per column),
    /// groups `quadStart ..< quadEnd`, added into `tile` (4 × 16, row-major).
    /// One 512-bit vector holds the whole group, so a step is half the
    /// instructions of the AVX2 kernel. Exact integer arithmetic.
    @inline(never)
    public static func int8Tile4x16(
        _ w0: UnsafePointer<Int8>, _ w1: UnsafePointer<Int8>, _ w2: UnsafePointer<Int8>, _ w3: UnsafePointer<Int8>,
        packed: UnsafeRawPointer, quadStart: Int, quadEnd: Int, tile: UnsafeMutablePointer<Int64>
    ) {
        #if arch(x86_64)
        let ones = _mm512_set1_epi16(1)
        var a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512()
        var a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512()
        var q = quadStart
        @inline(__always) func step(_ q: Int) {
            let xv = (packed + q &* 64).loadUnaligned(as: __m512i.self)
            let offset = q &* 4
            a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_maddubs_epi16(
                xv, _mm512_set1_epi32(UnsafeRawPointer(w0 + offset).loadUnaligned(as: Int32.self))), ones))
            a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(_mm512_maddubs_epi16(
                xv, _mm512_set1_epi32(UnsafeRawPointer(w1 + offset).loadUnaligned(as: Int32.self))), ones))
            a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(_mm512_maddubs_epi16(
                xv, _mm512_set1_epi32(UnsafeRawPointer(w2 + offset).loadUnaligned(as: Int32.self))), ones))
            a3 = _mm512_add_epi32(a3, _mm512_madd_epi16(_mm512_maddubs_epi16(
                xv, _mm512_set1_epi32(UnsafeRawPointer(w3 + offset).loadUnaligned(as: Int32.self))), ones))
        }
        while q &+ 1 < quadEnd {
            step(q)
            step(q &+ 1)
            q &+= 2
        }
        if q < quadEnd { step(q) }
        addLanes(a0, tile)
        addLanes(a1, tile + 16)
        addLanes(a2, tile + 32)
        addLanes(a3, tile + 48)
        #endif
    }

    /// `QuantizedMatmul.rowDots` of SwiftPrune: `dots[b] = Σ_k w[k] · xq[b · columns + k]`
    /// for `b` in `0 ..< batch` (unsigned 7-bit `xq`, column-major); returns `Σ_k w[k]`.
    /// 64 depths per step instead of 32. Exact integer arithmetic.
    @inline(never)
    public static func int8RowDots(
        _ w: UnsafePointer<Int8>, columns: Int, xq: UnsafePointer<UInt8>, batch: Int, dots: UnsafeMutablePointer<Int64>
    ) -> Int64 {
        var rowTotal: Int64 = 0
        var first = 0
        while first < batch {
            let left = batch &- first
            let count = left < 4 ? left : 4
            // Missing columns of a partial group repeat the last one; their sums are dropped.
            let x0 = xq + first &* columns
            let x1 = xq + (first &+ (count > 1 ? 1 : 0)) &* columns
            let x2 = xq + (first &+ (count > 2 ? 2 : count &- 1)) &* columns
            let x3 = xq + (first &+ (count > 3 ? 3 : count &- 1)) &* columns
            var t0: Int64 = 0, t1: Int64 = 0, t2: Int64 = 0, t3: Int64 = 0
            var sum: Int64 = 0
            var k = 0
            #if arch(x86_64)
            let ones = _mm512_set1_epi16(1), onesU8 = _mm512_set1_epi8(1)
            while k &+ 64 <= columns {
                var a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512()
                var a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512(), aw = _mm512_setzero_si512()
                let far = k &+ 64 &* 4096  // lanes stay far inside Int32
                let stop = far < columns ? far : columns
                while k &+ 64 <= stop {
                    let v = UnsafeRawPointer(w + k).loadUnaligned(as: __m512i.self)
                    a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_maddubs_epi16(
                        UnsafeRawPointer(x0 + k).loadUnaligned(as: __m512i.self), v), ones))
                    if count > 1 {
                        a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(_mm512_maddubs_epi16(
                            UnsafeRawPointer(x1 + k).loadUnaligned(as: __m512i.self), v), ones))
                        a2 = _mm512_add_epi32(a2, _mm512_madd_epi16(_mm512_maddubs_epi16(
                            UnsafeRawPointer(x2 + k).loadUnaligned(as: __m512i.self), v), ones))
                        a3 = _mm512_add_epi32(a3, _mm512_madd_epi16(_mm512_maddubs_epi16(
                            UnsafeRawPointer(x3 + k).loadUnaligned(as: __m512i.self), v), ones))
                    }
                    if first == 0 { aw = _mm512_add_epi32(aw, _mm512_madd_epi16(_mm512_maddubs_epi16(onesU8, v), ones)) }
                    k &+= 64
                }
                t0 &+= laneTotal(a0); t1 &+= laneTotal(a1); t2 &+= laneTotal(a2); t3 &+= laneTotal(a3)
                sum &+= laneTotal(aw)
            }
            #endif
            while k < columns {
                let weight = Int64(w[k])
                t0 &+= weight &* Int64(x0[k]); t1 &+= weight &* Int64(x1[k])
                t2 &+= weight &* Int64(x2[k]); t3 &+= weight &* Int64(x3[k])
                sum &+= weight
                k &+= 1
            }
            if first == 0 { rowTotal = sum }
            dots[first] = t0
            if count > 1 { dots[first &+ 1] = t1 }
            if count > 2 { dots[first &+ 2] = t2 }
            if count > 3 { dots[first &+ 3] = t3 }
            first &+= 4
        }
        return rowTotal
    }
}

#if arch(x86_64)
/// The sixteen Int32 lanes of `v`, widened and added into `out[0 ..< 16]`.
/// (Intrinsics, not `SIMD16<Int64>(truncatingIfNeeded:)`: that one is a
/// generic standard-library initializer the compiler emits as a shared specialization.)
@inline(__always)
private func addLanes(_ v: __m512i, _ out: UnsafeMutablePointer<Int64>) {
    let halves = unsafeBitCast(v, to: (__m256i, __m256i).self)
    let low = _mm512_cvtepi32_epi64(halves.0), high = _mm512_cvtepi32_epi64(halves.1)
    let p = UnsafeMutableRawPointer(out)
    p.storeBytes(of: _mm512_add_epi64(p.loadUnaligned(as: __m512i.self), low), as: __m512i.self)
    p.storeBytes(of: _mm512_add_epi64(p.loadUnaligned(fromByteOffset: 64, as: __m512i.self), high),
                 toByteOffset: 64, as: __m512i.self)
}

/// The sum of the sixteen Int32 lanes of `v`, in Int64.
@inline(__always)
private func laneTotal(_ v: __m512i) -> Int64 {
    let halves = unsafeBitCast(v, to: (__m256i, __m256i).self)
    let wide = _mm512_add_epi64(_mm512_cvtepi32_epi64(halves.0), _mm512_cvtepi32_epi64(halves.1))
    return _mm512_reduce_add_epi64(wide)
}
#endif

// MARK: - The sparse row kernel

/// Where the nonzeros of one row sit: `column(t)` is the column of its `t`-th value.
private protocol RowColumns {
    func column(_ t: Int) -> Int
}

private struct CSRColumns: RowColumns {
    let indices: UnsafePointer<Int32>
    @inline(__always) func column(_ t: Int) -> Int { Int(indices[t]) }
}

private struct GroupColumns: RowColumns {
    let indices: UnsafePointer<UInt8>
    let n: Int
    let m: Int
    let shift: Int
    let firstColumn: Int
    @inline(__always) func column(_ t: Int) -> Int {
        let group = shift >= 0 ? t &>> shift : t / n
        return firstColumn &+ group &* m &+ Int(indices[t])
    }
}

/// A copy of SwiftPrune's `sparseRowTimesDense`, operation for operation
/// (keep the two in step): `y[j] (+)= Σ_t values[t] · x[(column(t) − columnBase) · stride + j]`.
@inline(__always)
private func rowTimesDense<Columns: RowColumns>(
    values: UnsafePointer<Float>, columns: Columns, count: Int,
    x: UnsafePointer<Float>, stride: Int, columnBase: Int, width: Int, y: UnsafeMutablePointer<Float>,
    accumulate: Bool
) {
    @inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
    @inline(__always) func start16(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
        accumulate ? UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) : SIMD16<Float>()
    }
    @inline(__always) func row(_ t: Int) -> UnsafePointer<Float> {
        x + (columns.column(t) &- columnBase) &* stride
    }
    var j = 0
    while j &+ 64 <= width {
        var a0 = start16(y + j), a1 = start16(y + (j &+ 16)), a2 = start16(y + (j &+ 32)), a3 = start16(y + (j &+ 48))
        var t = 0
        while t < count {
            let v = SIMD16<Float>(repeating: values[t])
            let p = row(t) + j
            a0.addProduct(v, load16(p))
            a1.addProduct(v, load16(p + 16))
            a2.addProduct(v, load16(p + 32))
            a3.addProduct(v, load16(p + 48))
            t &+= 1
        }
        store16(a0, y + j); store16(a1, y + (j &+ 16)); store16(a2, y + (j &+ 32)); store16(a3, y + (j &+ 48))
        j &+= 64
    }
    while j &+ 16 <= width {
        var a0 = start16(y + j), a1 = SIMD16<Float>()
        var t = 0
        while t &+ 1 < count {
            a0.addProduct(SIMD16(repeating: values[t]), load16(row(t) + j))
            a1.addProduct(SIMD16(repeating: values[t &+ 1]), load16(row(t &+ 1) + j))
            t &+= 2
        }
        if t < count { a0.addProduct(SIMD16(repeating: values[t]), load16(row(t) + j)) }
        store16(a0 + a1, y + j)
        j &+= 16
    }
    if j &+ 8 <= width {
        var a0 = accumulate ? load8(y + j) : SIMD8<Float>(), a1 = SIMD8<Float>()
        var t = 0
        while t &+ 1 < count {
            a0.addProduct(SIMD8(repeating: values[t]), load8(row(t) + j))
            a1.addProduct(SIMD8(repeating: values[t &+ 1]), load8(row(t &+ 1) + j))
            t &+= 2
        }
        if t < count { a0.addProduct(SIMD8(repeating: values[t]), load8(row(t) + j)) }
        UnsafeMutableRawPointer(y + j).storeBytes(of: a0 + a1, as: SIMD8<Float>.self)
        j &+= 8
    }
    while j < width {
        var s0: Float = accumulate ? y[j] : 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var t = 0
        while t &+ 3 < count {
            s0 += values[t] * row(t)[j]
            s1 += values[t &+ 1] * row(t &+ 1)[j]
            s2 += values[t &+ 2] * row(t &+ 2)[j]
            s3 += values[t &+ 3] * row(t &+ 3)[j]
            t &+= 4
        }
        while t < count { s0 += values[t] * row(t)[j]; t &+= 1 }
        y[j] = (s0 + s1) + (s2 + s3)
        j &+= 1
    }
}
