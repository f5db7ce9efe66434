#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif
import SwiftPruneAVX512
import SwiftPruneAVX512VNNI
import SwiftPrunePrefetch

/// `W @ x` for int8 weights with per-row (per-output-channel) scales and
/// float32 activations: `W = scale[i] · (values[i, k] − zeroPoint[i])`, of
/// shape `(rows, columns)` = `(out_features, in_features)`, and `x` of shape
/// `(columns, batch)`.
///
/// Activations are quantized on the fly, per column of `x` (per sample), to
/// unsigned 7-bit integers with a zero point:
///
///     lo = min(0, min x[:, b]),  hi = max(0, max x[:, b])
///     s_b = (hi − lo) / 127   (1 when hi == lo)
///     z_b = clamp(rint(−lo / s_b), 0, 127)
///     xq[k, b] = clamp(rint(x[k, b] / s_b) + z_b, 0, 127)
///
/// and the product is taken in exact integer arithmetic:
///
///     acc[i, b] = Σ_k (values[i, k] − zp_i) · (xq[k, b] − z_b)
///     y[i, b]   = Float(acc[i, b]) · (scale[i] · s_b)
///
/// The only error against `dequantize(W) @ x` is the rounding of `x`: a
/// relative (Frobenius) error of about 1.6% for Gaussian activations, 0.8%
/// for post-ReLU ones, measured at 4096 × 4096 × 64. Seven bits, not eight, is the
/// range x86's AVX2 `vpmaddubsw` multiplies without saturating (PyTorch's
/// FBGEMM backend makes the same choice, `reduce_range`): a step of four
/// int8 products is two instructions, twice the float FMA rate.
public enum QuantizedMatmul {
    /// Rows and columns of one register tile.
    static let tileRows = 4, tileColumns = 16
    /// Int32 lanes overflow after about 133 000 products of ±127 · 127; the
    /// depth is cut into chunks of this many groups of four and the chunks
    /// summed in Int64.
    static let chunkQuads = 16384

    /// Computes `y = dequantize(W) @ x` (see the type's documentation).
    ///
    /// - Parameters:
    ///   - values: `rows · columns` int8 weights, C order.
    ///   - scale: `rows` per-row scales.
    ///   - zeroPoint: `rows` per-row integer zero points, or an empty buffer for none.
    ///   - x: `xRows · batch` float32 activations, C order; `xRows == columns`.
    ///   - y: `rows · batch` outputs.
    /// - Throws: ``SwiftPruneError`` on a size mismatch, or NaN/Inf in `x`.
    public static func matmul(
        values: UnsafeBufferPointer<Int8>, rows: Int, columns: Int, scale: UnsafeBufferPointer<Float>,
        zeroPoint: UnsafeBufferPointer<Int32>, x: UnsafeBufferPointer<Float>, xRows: Int, batch: Int,
        y: UnsafeMutableBufferPointer<Float>
    ) throws {
        let outputs = try checkMatmulShapes(rows: rows, columns: columns, xRows: xRows, n: batch, xCount: x.count, yCount: y.count)
        guard values.count == rows * columns else {
            throw SwiftPruneError.value("values: shape (\(rows), \(columns)) needs \(rows * columns) elements, got \(values.count)")
        }
        guard scale.count == rows else { throw SwiftPruneError.value("scale must have \(rows) elements (one per row), got \(scale.count)") }
        guard zeroPoint.isEmpty || zeroPoint.count == rows else {
            throw SwiftPruneError.value("zero_point must have \(rows) elements (one per row), got \(zeroPoint.count)")
        }
        guard outputs > 0 else { return }
        guard columns > 0, let xBase = x.baseAddress, let wBase = values.baseAddress, let yBase = y.baseAddress,
              let scaleBase = scale.baseAddress else {
            y.update(repeating: 0)
            return
        }
        let activations = try ActivationQuantization(x: xBase, depth: columns, batch: batch)
        defer { activations.deallocate() }
        let zeroPoints = zeroPoint.baseAddress
        let blocks = (rows + tileRows - 1) / tileRows
        let workers = Threading.workerCount(for: outputs * columns, minimumPerWorker: 1 << 18)
        let avx512 = CPUFeatures.useAVX512, vnni = CPUFeatures.useAVX512VNNI
        if let columnMajor = activations.columnMajor {
            // Few columns (a matrix-vector product): one pass over each weight row,
            // dotted with every column of x, instead of zero-padded 16-column tiles.
            let allDots = try FallibleAllocation.allocate(Int64.self, count: workers &* batch, "the int8 row dots")
            defer { FallibleAllocation.free(allDots) }
            // Rows dealt in chunks from a shared counter, as the tiles below.
            let chunks = workers == 1 ? 1 : min(rows, workers &* chunksPerWorker)
            parallelForChunks(workers: workers, chunks: chunks) { worker, chunk in
                let dots = allDots + worker &* batch
                for row in partitionRange(rows, parts: chunks, index: chunk) {
                    let weights = wBase + row &* columns
                    let sum = avx512
                        ? AVX512Kernels.int8RowDots(weights, columns: columns, xq: columnMajor, batch: batch, dots: dots)
                        : rowDots(weights, columns: columns, xq: columnMajor, batch: batch, into: dots)
                    let zp = Int64(zeroPoints?[row] ?? 0)
                    for b in 0 ..< batch {
                        let z = Int64(activations.zeroPoints[b])
                        let exact = dots[b] &- z &* sum &- zp &* activations.columnSums[b] &+ Int64(columns) &* zp &* z
                        yBase[row &* batch &+ b] = Float(exact) * (scaleBase[row] * activations.scales[b])
                    }
                }
            }
            return
        }
        // One 4 × 16 Int64 tile of sums per worker, allocated once per call (not per block).
        let tiles = try FallibleAllocation.allocate(Int64.self, count: workers &* tileRows &* tileColumns, "the int8 tile sums")
        defer { FallibleAllocation.free(tiles) }
        // The blocks are dealt in chunks from a shared counter (parallelForChunks), not as one
        // fixed share per worker. Every output is still one block's exact integer sum, so the
        // bits do not depend on who took it.
        let chunks = workers == 1 ? 1 : min(blocks, workers &* chunksPerWorker)
        parallelForChunks(workers: workers, chunks: chunks) { worker, chunk in
            let tile = tiles + worker &* tileRows &* tileColumns
            for block in partitionRange(blocks, parts: chunks, index: chunk) {
                let firstRow = block &* tileRows
                let rowCount = min(tileRows, rows &- firstRow)
                multiplyTile(weights: wBase, rows: rows, columns: columns, firstRow: firstRow, rowCount: rowCount,
                             activations: activations, scale: scaleBase, zeroPoint: zeroPoints, y: yBase,
                             tile: tile, avx512: avx512, vnni: vnni)
            }
        }
    }

    /// Chunks of row blocks per worker in ``matmul``'s shared queue: enough that a late
    /// worker's share is taken over in small pieces (at 4096 rows and two workers a chunk
    /// is 32 rows, ~0.2 ms), few enough that the counter is touched rarely.
    static let chunksPerWorker = 64

    /// One block of up to four rows against every column of `x`; `tile` is the
    /// worker's scratch of `tileRows · tileColumns` sums (overwritten).
    @inline(__always)
    static func multiplyTile(
        weights: UnsafePointer<Int8>, rows: Int, columns: Int, firstRow: Int, rowCount: Int, activations: ActivationQuantization,
        scale: UnsafePointer<Float>, zeroPoint: UnsafePointer<Int32>?, y: UnsafeMutablePointer<Float>,
        tile: UnsafeMutablePointer<Int64>, avx512: Bool, vnni: Bool
    ) {
        // Missing rows of a partial block repeat the last row; their results are dropped.
        var rowPointers = (weights, weights, weights, weights)
        withUnsafeMutableBytes(of: &rowPointers) { raw in
            let pointers = raw.bindMemory(to: UnsafePointer<Int8>.self)
            for r in 0 ..< tileRows { pointers[r] = weights + (firstRow &+ min(r, rowCount &- 1)) &* columns }
        }
        var rowSums = (Int64(0), Int64(0), Int64(0), Int64(0))
        withUnsafeMutableBytes(of: &rowSums) { raw in
            let sums = raw.bindMemory(to: Int64.self)
            withUnsafeBytes(of: rowPointers) { pointerBytes in
                let pointers = pointerBytes.bindMemory(to: UnsafePointer<Int8>.self)
                for r in 0 ..< rowCount { sums[r] = rowSum(pointers[r], columns) }
            }
        }
        let batch = activations.batch, quads = activations.quads
        #if arch(x86_64)
        // Symmetric weights, a depth of whole groups of four and one chunk: the AVX2 kernel's
        // Int32 sums are final, and so is the corrected sum in Int32 (see `finishInt32`).
        let int32Sums = !avx512 && !vnni && zeroPoint == nil && quads &* 4 == columns && quads <= chunkQuads
        #else
        let int32Sums = false
        #endif
        for columnBlock in 0 ..< activations.columnBlocks {
            tile.update(repeating: 0, count: tileRows &* tileColumns)
            var chunkStart = 0
            while chunkStart < quads {
                let chunkEnd = min(quads, chunkStart &+ chunkQuads)
                withUnsafeBytes(of: rowPointers) { pointerBytes in
                    let p = pointerBytes.bindMemory(to: UnsafePointer<Int8>.self)
                    if vnni {
                        AVX512VNNIKernels.int8Tile4x16(p[0], p[1], p[2], p[3], packed: activations.packedBlock(columnBlock),
                                                       quadStart: chunkStart, quadEnd: chunkEnd, tile: tile)
                    } else if avx512 {
                        AVX512Kernels.int8Tile4x16(p[0], p[1], p[2], p[3], packed: activations.packedBlock(columnBlock),
                                                   quadStart: chunkStart, quadEnd: chunkEnd, tile: tile)
                    } else {
                        // The first pass also prefetches the next block's rows (contiguous
                        // after this block's): its row sums then read them from cache
                        // instead of stalling on every miss (6% of a 4096² profile).
                        let nextRow = firstRow &+ tileRows
                        let prefetch = columnBlock == 0 && chunkStart == 0 && nextRow < rows
                        microKernel(p[0], p[1], p[2], p[3], packed: activations.packedBlock(columnBlock),
                                    quads: chunkStart ..< chunkEnd, into: tile, int32Sums: int32Sums,
                                    ahead: prefetch ? weights + nextRow &* columns : nil,
                                    aheadBytes: min(tileRows, rows &- nextRow) &* columns)
                    }
                }
                chunkStart = chunkEnd
            }
            let firstColumn = columnBlock &* tileColumns
            let columnCount = min(tileColumns, batch &- firstColumn)
            #if arch(x86_64)
            if int32Sums {
                withUnsafeBytes(of: rowSums) { sumBytes in
                    let sums = sumBytes.bindMemory(to: Int64.self)
                    for r in 0 ..< rowCount {
                        finishInt32(UnsafeRawPointer(tile) + r &* tileColumns &* 4, rowSum: sums[r], row: firstRow &+ r,
                                    firstColumn: firstColumn, columnCount: columnCount, activations: activations,
                                    scale: scale[firstRow &+ r], y: y)
                    }
                }
                continue
            }
            #endif
            withUnsafeBytes(of: rowPointers) { pointerBytes in
                let pointers = pointerBytes.bindMemory(to: UnsafePointer<Int8>.self)
                withUnsafeBytes(of: rowSums) { sumBytes in
                    let sums = sumBytes.bindMemory(to: Int64.self)
                    for r in 0 ..< rowCount {
                        let row = firstRow &+ r
                        let zp = Int64(zeroPoint?[row] ?? 0)
                        let rowScale = scale[row]
                        for c in 0 ..< columnCount {
                            let b = firstColumn &+ c
                            var dot = tile[r &* tileColumns &+ c]
                            // The depth left over after the groups of four.
                            for k in (quads &* 4) ..< columns {
                                dot &+= Int64(pointers[r][k]) &* Int64(activations.tail[(k &- quads &* 4) &* activations.paddedBatch &+ b])
                            }
                            let z = Int64(activations.zeroPoints[b])
                            let exact = dot &- z &* sums[r] &- zp &* activations.columnSums[b]
                                &+ Int64(columns) &* zp &* z
                            y[row &* batch &+ b] = Float(exact) * (rowScale * activations.scales[b])
                        }
                    }
                }
            }
        }
    }

    #if arch(x86_64)
    /// The outputs of one row of a tile from the kernel's Int32 sums (`int32Sums`, one
    /// row of 16 at `sums`): `y[row, b] = Float(dot − z_b · Σw) · (scale · s_b)`, eight
    /// columns per step instead of one Int64 expression per output (6.6% of a 4096² × 64
    /// profile). Exact: the true value `Σ_k w[k] · (xq[k, b] − z_b)` is at most
    /// 128 · 127 · depth ≤ 2^30 in magnitude for a depth of one chunk, so the wrapping
    /// Int32 arithmetic lands on it, and `vcvtdq2ps` rounds it to nearest like `Float(_:)`.
    @inline(__always)
    static func finishInt32(
        _ sums: UnsafeRawPointer, rowSum: Int64, row: Int, firstColumn: Int, columnCount: Int,
        activations: ActivationQuantization, scale: Float, y: UnsafeMutablePointer<Float>
    ) {
        let rowSum = _mm256_set1_epi32(Int32(truncatingIfNeeded: rowSum)), rowScale = _mm256_set1_ps(scale)
        var outputs = (_mm256_setzero_ps(), _mm256_setzero_ps())
        withUnsafeMutableBytes(of: &outputs) { out in
            for half in 0 ..< 2 {
                let column = firstColumn &+ half &* 8  // padded columns have s = 1, z = 0
                let dot = (sums + half &* 32).loadUnaligned(as: __m256i.self)
                let z = UnsafeRawPointer(activations.zeroPoints + column).loadUnaligned(as: __m256i.self)
                let exact = _mm256_sub_epi32(dot, _mm256_mullo_epi32(z, rowSum))
                let s = UnsafeRawPointer(activations.scales + column).loadUnaligned(as: __m256.self)
                out.storeBytes(of: _mm256_mul_ps(_mm256_cvtepi32_ps(exact), _mm256_mul_ps(rowScale, s)),
                               toByteOffset: half &* 32, as: __m256.self)
            }
            let target = y + (row &* activations.batch &+ firstColumn)
            if columnCount == tileColumns {
                UnsafeMutableRawPointer(target).copyMemory(from: out.baseAddress!, byteCount: 64)
            } else {
                target.update(from: out.bindMemory(to: Float.self).baseAddress!, count: columnCount)
            }
        }
    }
    #endif

    /// `Σ_k w[k]` over one row.
    @inline(__always)
    static func rowSum(_ w: UnsafePointer<Int8>, _ count: Int) -> Int64 {
        var total: Int64 = 0
        var k = 0
        #if arch(x86_64)
        // 1 · w[k] pair sums (vpmaddubsw), then pairs of those (vpmaddwd): four bytes per Int32 lane.
        let onesU8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1)
        while k &+ 32 <= count {
            var lanes = _mm256_setzero_si256()
            let stop = min(count, k &+ 32 &* 4096)  // well inside Int32 range per lane
            while k &+ 32 <= stop {
                let v = UnsafeRawPointer(w + k).loadUnaligned(as: __m256i.self)
                lanes = _mm256_add_epi32(lanes, _mm256_madd_epi16(_mm256_maddubs_epi16(onesU8, v), ones16))
                k &+= 32
            }
            total &+= Int64(unsafeBitCast(lanes, to: SIMD8<Int32>.self).wrappedSum())
        }
        #endif
        while k < count { total &+= Int64(w[k]); k &+= 1 }
        return total
    }

    /// `dots[b] = Σ_k w[k] · xq[b · columns + k]` for every column `b` of the
    /// column-major activations; returns `Σ_k w[k]`. Columns are taken four at a time.
    @inline(__always)
    static func rowDots(
        _ w: UnsafePointer<Int8>, columns: Int, xq: UnsafePointer<UInt8>, batch: Int, into dots: UnsafeMutablePointer<Int64>
    ) -> Int64 {
        var rowTotal: Int64 = 0
        var first = 0
        while first < batch {
            let count = min(4, batch &- first)
            // Missing columns of a partial group repeat the last one; their sums are dropped.
            let x0 = xq + first &* columns
            let x1 = xq + (first &+ min(1, count &- 1)) &* columns
            let x2 = xq + (first &+ min(2, count &- 1)) &* columns
            let x3 = xq + (first &+ min(3, count &- 1)) &* columns
            var totals = (Int64(0), Int64(0), Int64(0), Int64(0))
            var sum: Int64 = 0
            var k = 0
            #if arch(x86_64)
            let ones = _mm256_set1_epi16(1), onesU8 = _mm256_set1_epi8(1)
            while k &+ 32 <= columns {
                var a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256()
                var a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256(), aw = _mm256_setzero_si256()
                let stop = min(columns, k &+ 32 &* 8192)  // lanes stay far inside Int32
                while k &+ 32 <= stop {
                    let v = UnsafeRawPointer(w + k).loadUnaligned(as: __m256i.self)
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(
                        UnsafeRawPointer(x0 + k).loadUnaligned(as: __m256i.self), v), ones))
                    if count > 1 {
                        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(
                            UnsafeRawPointer(x1 + k).loadUnaligned(as: __m256i.self), v), ones))
                        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(
                            UnsafeRawPointer(x2 + k).loadUnaligned(as: __m256i.self), v), ones))
                        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(
                            UnsafeRawPointer(x3 + k).loadUnaligned(as: __m256i.self), v), ones))
                    }
                    if first == 0 { aw = _mm256_add_epi32(aw, _mm256_madd_epi16(_mm256_maddubs_epi16(onesU8, v), ones)) }
                    k &+= 32
                }
                @inline(__always) func total(_ v: __m256i) -> Int64 { Int64(unsafeBitCast(v, to: SIMD8<Int32>.self).wrappedSum()) }
                totals.0 &+= total(a0); totals.1 &+= total(a1); totals.2 &+= total(a2); totals.3 &+= total(a3)
                sum &+= total(aw)
            }
            #endif
            while k < columns {
                let weight = Int64(w[k])
                totals.0 &+= weight &* Int64(x0[k]); totals.1 &+= weight &* Int64(x1[k])
                totals.2 &+= weight &* Int64(x2[k]); totals.3 &+= weight &* Int64(x3[k])
                sum &+= weight
                k &+= 1
            }
            if first == 0 { rowTotal = sum }
            dots[first] = totals.0
            if count > 1 { dots[first &+ 1] = totals.1 }
            if count > 2 { dots[first &+ 2] = totals.2 }
            if count > 3 { dots[first &+ 3] = totals.3 }
            first &+= 4
        }
        return rowTotal
    }

    /// Four rows × sixteen columns, depth `quads` (groups of four), added into `tile` (row-major 4 × 16).
    @inline(__always)
    static func microKernel(
        _ w0: UnsafePointer<Int8>, _ w1: UnsafePointer<Int8>, _ w2: UnsafePointer<Int8>, _ w3: UnsafePointer<Int8>,
        packed: UnsafeRawPointer, quads: Range<Int>, into tile: UnsafeMutablePointer<Int64>, int32Sums: Bool = false,
        ahead: UnsafePointer<Int8>? = nil, aheadBytes: Int = 0
    ) {
        #if arch(x86_64)
        let ones = _mm256_set1_epi16(1)
        var a00 = _mm256_setzero_si256(), a01 = _mm256_setzero_si256()
        var a10 = _mm256_setzero_si256(), a11 = _mm256_setzero_si256()
        var a20 = _mm256_setzero_si256(), a21 = _mm256_setzero_si256()
        var a30 = _mm256_setzero_si256(), a31 = _mm256_setzero_si256()
        var q = quads.lowerBound
        let end = quads.upperBound
        @inline(__always) func step(_ q: Int) {
            let xp = packed + q &* 64
            let x0 = xp.loadUnaligned(as: __m256i.self)
            let x1 = (xp + 32).loadUnaligned(as: __m256i.self)
            let offset = q &* 4
            let b0 = _mm256_set1_epi32(UnsafeRawPointer(w0 + offset).loadUnaligned(as: Int32.self))
            a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b0), ones))
            a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b0), ones))
            let b1 = _mm256_set1_epi32(UnsafeRawPointer(w1 + offset).loadUnaligned(as: Int32.self))
            a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b1), ones))
            a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b1), ones))
            let b2 = _mm256_set1_epi32(UnsafeRawPointer(w2 + offset).loadUnaligned(as: Int32.self))
            a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b2), ones))
            a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b2), ones))
            let b3 = _mm256_set1_epi32(UnsafeRawPointer(w3 + offset).loadUnaligned(as: Int32.self))
            a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b3), ones))
            a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b3), ones))
        }
        // Two groups per trip: half the loop overhead on the ports the multiplies need.
        // One cache line of `ahead` is prefetched per trip.
        var fetched = 0
        while q &+ 1 < end {
            if let ahead, fetched < aheadBytes {
                swiftprune_prefetch_read(ahead + fetched)
                fetched &+= 64
            }
            step(q)
            step(q &+ 1)
            q &+= 2
        }
        if q < end { step(q) }
        if int32Sums {
            // The sums as they are: 64 Int32 in the first half of `tile`, row-major 4 × 16.
            let sums = UnsafeMutableRawPointer(tile)
            sums.storeBytes(of: a00, toByteOffset: 0, as: __m256i.self)
            sums.storeBytes(of: a01, toByteOffset: 32, as: __m256i.self)
            sums.storeBytes(of: a10, toByteOffset: 64, as: __m256i.self)
            sums.storeBytes(of: a11, toByteOffset: 96, as: __m256i.self)
            sums.storeBytes(of: a20, toByteOffset: 128, as: __m256i.self)
            sums.storeBytes(of: a21, toByteOffset: 160, as: __m256i.self)
            sums.storeBytes(of: a30, toByteOffset: 192, as: __m256i.self)
            sums.storeBytes(of: a31, toByteOffset: 224, as: __m256i.self)
            return
        }
        @inline(__always) func add(_ v: __m256i, _ at: Int) {
            let lanes = unsafeBitCast(v, to: SIMD8<Int32>.self)
            for i in 0 ..< 8 { tile[at &+ i] &+= Int64(lanes[i]) }
        }
        add(a00, 0); add(a01, 8); add(a10, 16); add(a11, 24)
        add(a20, 32); add(a21, 40); add(a30, 48); add(a31, 56)
        #else
        let ws = (w0, w1, w2, w3)
        withUnsafeBytes(of: ws) { raw in
            let rows = raw.bindMemory(to: UnsafePointer<Int8>.self)
            for r in 0 ..< 4 {
                for q in quads {
                    let xq = packed + q &* 64
                    for c in 0 ..< 16 {
                        var sum: Int64 = 0
                        for t in 0 ..< 4 {
                            let byte = xq.load(fromByteOffset: (c / 8) &* 32 &+ (c % 8) &* 4 &+ t, as: UInt8.self)
                            sum &+= Int64(rows[r][q &* 4 &+ t]) &* Int64(byte)
                        }
                        tile[r &* 16 &+ c] &+= sum
                    }
                }
            }
        }
        #endif
    }
}

/// The activations of one call, quantized per column and packed for the
/// micro-kernel: for each block of 16 columns and each group of 4 depths, 64
/// bytes = two 32-byte vectors, each holding 8 columns × 4 consecutive depths.
struct ActivationQuantization {
    let batch: Int
    let paddedBatch: Int
    let quads: Int
    let columnBlocks: Int
    let packed: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<Float>
    let zeroPoints: UnsafeMutablePointer<Int32>
    /// Σ_k xq[k, b], for weights with a zero point.
    let columnSums: UnsafeMutablePointer<Int64>
    /// xq of the last `depth % 4` depths, `(depth % 4, paddedBatch)`.
    let tail: UnsafeMutablePointer<Int32>
    /// For fewer than ``smallBatch`` columns only: xq column-major, `(batch, depth)`
    /// (and nothing is packed).
    let columnMajor: UnsafeMutablePointer<UInt8>?
    static let smallBatch = 8

    /// - Parameter portable: quantize full blocks with the portable `SIMD16` code
    ///   (``quantizeBlockPortable(x:depth:first:blockBase:)``) even on x86-64,
    ///   where the AVX2 one is used otherwise: for tests, which check that both give
    ///   the same bytes.
    init(x: UnsafePointer<Float>, depth: Int, batch: Int, portable: Bool = false) throws {
        let tileColumns = QuantizedMatmul.tileColumns
        self.batch = batch
        columnBlocks = (batch + tileColumns - 1) / tileColumns
        paddedBatch = columnBlocks * tileColumns
        quads = depth / 4
        let tailDepth = depth - quads * 4
        let small = batch < ActivationQuantization.smallBatch
        let (packedBytes, overflow) = (small ? 64 : columnBlocks * 64).multipliedReportingOverflow(by: small ? 1 : max(quads, 1))
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "x is too large") }
        // All from the fallible allocator; a refusal frees what was already taken.
        var taken: [UnsafeMutableRawPointer] = []
        func take<T>(_: T.Type, _ count: Int) throws -> UnsafeMutablePointer<T> {
            let pointer = try FallibleAllocation.allocate(T.self, count: count, "the quantized activations")
            taken.append(UnsafeMutableRawPointer(pointer))
            return pointer
        }
        do {
            packed = UnsafeMutableRawPointer(try take(UInt8.self, packedBytes))
            scales = try take(Float.self, paddedBatch)
            zeroPoints = try take(Int32.self, paddedBatch)
            columnSums = try take(Int64.self, paddedBatch)
            tail = try take(Int32.self, max(1, tailDepth * paddedBatch))
            columnMajor = small ? try take(UInt8.self, max(1, depth * batch)) : nil
        } catch {
            for pointer in taken { FallibleAllocation.free(pointer) }
            throw error
        }
        packed.initializeMemory(as: UInt8.self, repeating: 0, count: packedBytes)
        columnSums.initialize(repeating: 0, count: paddedBatch)
        tail.initialize(repeating: 0, count: max(1, tailDepth * paddedBatch))

        // Each block of 16 columns is independent: its range, scales and codes.
        let blocks = small ? 1 : columnBlocks
        let workers = Threading.workerCount(for: depth * batch, minimumPerWorker: 1 << 15)
        var failures = [String?](repeating: nil, count: blocks)
        let this = self
        failures.withUnsafeMutableBufferPointer { failuresOut in
            parallelFor(workers: min(workers, blocks)) { worker in
                for block in partitionRange(blocks, parts: min(workers, blocks), index: worker) {
                    let first = small ? 0 : block &* tileColumns
                    let width = small ? batch : min(tileColumns, batch &- first)
                    failuresOut[block] = this.quantizeColumns(x: x, depth: depth, first: first, width: width, block: block,
                                                              portable: portable)
                }
            }
        }
        for b in batch ..< paddedBatch { scales[b] = 1; zeroPoints[b] = 0 }
        if let failure = failures.lazy.compactMap({ $0 }).first {
            deallocate()
            throw SwiftPruneError.value(failure)
        }
    }

    /// Ranges, scales, zero points, codes and column sums of columns
    /// `first ..< first + width` (one 16-column block, or all columns of a
    /// small batch). Returns an error message instead of throwing.
    func quantizeColumns(x: UnsafePointer<Float>, depth: Int, first: Int, width: Int, block: Int,
                         portable: Bool = false) -> String? {
        let blockBase = block &* quads &* 64
        if width == QuantizedMatmul.tileColumns && columnMajor == nil {
            #if arch(x86_64)
            if !portable { return quantizeBlockAVX2(x: x, depth: depth, first: first, blockBase: blockBase) }
            #endif
            return quantizeBlockPortable(x: x, depth: depth, first: first, blockBase: blockBase)
        }
        return quantizeColumnsOneByOne(x: x, depth: depth, first: first, width: width, blockBase: blockBase)
    }

    /// A partial block or a small batch: one column at a time.
    func quantizeColumnsOneByOne(x: UnsafePointer<Float>, depth: Int, first: Int, width: Int, blockBase: Int) -> String? {
        let packedBytes8 = packed.assumingMemoryBound(to: UInt8.self)
        for b in first ..< first &+ width {
            var low: Float = 0, high: Float = 0, poison: Float = 0
            for k in 0 ..< depth {
                let v = x[k &* batch &+ b]
                low = min(low, v)
                high = max(high, v)
                poison += v * 0
            }
            guard poison == 0 else { return "x contains NaN or Inf" }
            var s = (high - low) / 127
            if s == 0 { s = 1 }
            guard s.isFinite else { return "x column \(b) spans too wide a range to quantize (overflow)" }
            let z = min(max((-low / s).rounded(.toNearestOrEven), 0), 127)
            scales[b] = s
            zeroPoints[b] = Int32(z)
            var sum: Int64 = 0
            let c = b &- first
            for k in 0 ..< depth {
                let value = Int32(min(max((x[k &* batch &+ b] / s).rounded(.toNearestOrEven) + z, 0), 127))
                sum &+= Int64(value)
                if let columnMajor {
                    columnMajor[b &* depth &+ k] = UInt8(truncatingIfNeeded: value)
                } else if k >> 2 < quads {
                    packedBytes8[blockBase &+ (k >> 2) &* 64 &+ (c >> 3) &* 32 &+ (c & 7) &* 4 &+ (k & 3)] =
                        UInt8(truncatingIfNeeded: value)
                } else {
                    tail[(k &- quads &* 4) &* paddedBatch &+ b] = value
                }
            }
            columnSums[b] = sum
        }
        return nil
    }

    #if arch(x86_64)
    /// The full-block branch of ``quantizeColumns(x:depth:first:width:block:)`` with AVX2
    /// intrinsics (``ActivationBlockAVX2``): the same codes, scales, zero points and sums.
    func quantizeBlockAVX2(x: UnsafePointer<Float>, depth: Int, first: Int, blockBase: Int) -> String? {
        typealias Block = ActivationBlockAVX2
        let (left, right) = Block.ranges(x: x, depth: depth, batch: batch, first: first)
        // (`__m256` is `SIMD8<Float>` in Swift: its lanes are read directly.)
        guard left.poison == .zero, right.poison == .zero else { return "x contains NaN or Inf" }
        @inline(__always) func step(_ range: Block.Extremes) -> SIMD8<Float> {
            let step = _mm256_div_ps(_mm256_sub_ps(range.high, range.low), _mm256_set1_ps(127))
            return step.replacing(with: 1, where: step .== 0)
        }
        let stepLeft = step(left), stepRight = step(right)
        for c in 0 ..< 16 where !(c < 8 ? stepLeft[c] : stepRight[c &- 8]).isFinite {
            return "x column \(first + c) spans too wide a range to quantize (overflow)"
        }
        let quantizeLeft = Block.Quantizer(s: stepLeft, low: left.low)
        let quantizeRight = Block.Quantizer(s: stepRight, low: right.low)
        var sums = SIMD16<Int64>()
        @inline(__always) func add(_ low: __m256i, _ high: __m256i) {
            let l = unsafeBitCast(low, to: SIMD8<UInt32>.self), h = unsafeBitCast(high, to: SIMD8<UInt32>.self)
            sums &+= SIMD16<Int64>(truncatingIfNeeded: SIMD16(lowHalf: l, highHalf: h))
        }
        var start = 0
        while start < quads {
            let end = min(quads, start &+ Block.maximumQuads)
            let (l, h) = Block.pack(x: x, batch: batch, first: first, quads: start ..< end, left: quantizeLeft,
                                    right: quantizeRight, records: packed + blockBase)
            add(l, h)
            start = end
        }
        for k in (quads &* 4) ..< depth {
            let row = UnsafeRawPointer(x + (k &* batch &+ first))
            let l = quantizeLeft.codes(row.loadUnaligned(as: __m256.self))
            let h = quantizeRight.codes((row + 32).loadUnaligned(as: __m256.self))
            let at = UnsafeMutableRawPointer(tail + ((k &- quads &* 4) &* paddedBatch &+ first))
            at.storeBytes(of: l, as: __m256i.self)
            (at + 32).storeBytes(of: h, as: __m256i.self)
            add(l, h)
        }
        let z = SIMD16(lowHalf: quantizeLeft.z, highHalf: quantizeRight.z)
        for c in 0 ..< 16 {
            scales[first &+ c] = c < 8 ? stepLeft[c] : stepRight[c &- 8]
            zeroPoints[first &+ c] = Int32(z[c])
            columnSums[first &+ c] = sums[c]
        }
        return nil
    }
    #endif

    func packedBlock(_ block: Int) -> UnsafeRawPointer { UnsafeRawPointer(packed + block &* quads &* 64) }

    func deallocate() {
        FallibleAllocation.free(packed)
        FallibleAllocation.free(scales)
        FallibleAllocation.free(zeroPoints)
        FallibleAllocation.free(columnSums)
        FallibleAllocation.free(tail)
        FallibleAllocation.free(columnMajor)
    }
}
