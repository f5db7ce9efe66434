/// The inner kernel shared by ``CSRMatrix`` and ``NMSparseMatrix``: one sparse
/// row of `W` times a dense row-major block `x`.
///
/// `y[j] (+)= Σ_t values[t] · x[(columns[t] − columnBase) · stride + j]` for
/// `j` in `0 ..< width` (`+=` when `accumulate`, else `=`). Every nonzero
/// streams one row of `x` through 64 lanes of accumulators held in registers
/// (four `SIMD16<Float>`, eight AVX2 vectors); the output row is written
/// once. Columns are taken 64 at a time, then 16, then 8, then one by one.
///
/// `AVX512Kernels.csrRows`/`nmRows` (module SwiftPruneAVX512) hold a copy of
/// this function, operation for operation: change both together.
@inline(__always)
func sparseRowTimesDense<Columns: SparseColumns>(
    values: UnsafePointer<Float>, columns: Columns, count: Int,
    x: UnsafePointer<Float>, stride: Int, columnBase: Int = 0, width: Int, y: UnsafeMutablePointer<Float>,
    accumulate: Bool = false
) {
    @inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
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
        store(a0, y + j); store(a1, y + (j &+ 16)); store(a2, y + (j &+ 32)); store(a3, y + (j &+ 48))
        j &+= 64
    }
    while j &+ 16 <= width {
        var a0 = start16(y + j), a1 = SIMD16<Float>()
        var t = 0
        // Two nonzeros per step: two independent accumulator chains.
        while t &+ 1 < count {
            a0.addProduct(SIMD16(repeating: values[t]), load16(row(t) + j))
            a1.addProduct(SIMD16(repeating: values[t &+ 1]), load16(row(t &+ 1) + j))
            t &+= 2
        }
        if t < count { a0.addProduct(SIMD16(repeating: values[t]), load16(row(t) + j)) }
        store(a0 + a1, y + j)
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
        store(a0 + a1, y + j)
        j &+= 8
    }
    while j < width {
        // Four partial sums, so a long row is not one serial chain.
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

/// Where the nonzeros of one row (slice) sit: `column(t)` is the column of its `t`-th value.
protocol SparseColumns {
    func column(_ t: Int) -> Int
}

/// CSR: explicit Int32 column indices.
struct ExplicitColumns: SparseColumns {
    let indices: UnsafePointer<Int32>
    @inline(__always) func column(_ t: Int) -> Int { Int(indices[t]) }
}

/// N:M: value `t` is in group `t / n` (a shift when `n` is a power of two),
/// at position `indices[t]` inside it; `firstColumn` is the first group's column.
struct GroupColumns: SparseColumns {
    let indices: UnsafePointer<UInt8>
    let n: Int
    let m: Int
    let shift: Int  // log2(n), or -1 when n is not a power of two
    let firstColumn: Int
    @inline(__always) func column(_ t: Int) -> Int {
        let group = shift >= 0 ? t &>> shift : t / n
        return firstColumn &+ group &* m &+ Int(indices[t])
    }
}

/// The cache-blocked driver of both sparse formats: `y[rows] = W[rows, :] @ x`.
///
/// `x` (`depth × batch`, C order) is visited in tiles of at most 64 columns.
/// A tile is copied into a 64-byte-aligned buffer (no vector load then splits
/// a cache line), a panel of up to 16 MiB at a time. Within it, chunks of
/// `rowChunk` rows pass over blocks of `blockDepth` rows of `x`, so a block
/// stays in L1 while the chunk's rows use it and the chunk's partial sums
/// stay in L1 too (they go through `y`). `nonzeros(row, k0, k1)` returns the
/// row's nonzeros with columns in `k0 ..< k1` as (values, columns, count);
/// blocks are visited in increasing order for every row, after `restart()`.
///
/// `chunkKernel`, when given, replaces the loop over a chunk's rows for one
/// block (the AVX-512 kernels, CSR's `CSRChunkKernel`): it must do what `sparseRowTimesDense` does
/// for each row of the chunk, with the same nonzeros. It is not used for
/// `batch < 8` (a scalar loop, where wider vectors do not help).
///
/// `sharedPanel`, when given, is ``SharedSparsePanel``'s copy of all of `x`
/// (one tile, the whole depth), made once for every worker of the call.
/// - Throws: ``SwiftPruneError`` `.outOfMemory` if the panel cannot be allocated.
@inline(__always)
func blockedSparseProduct<Columns: SparseColumns>(
    rows: Range<Int>, depth: Int, x: UnsafePointer<Float>, batch: Int, y: UnsafeMutablePointer<Float>,
    blockDepth requestedBlockDepth: Int, rowChunk: Int, sharedPanel: SharedSparsePanel? = nil,
    nonzeros: (_ row: Int, _ k0: Int, _ k1: Int) -> (UnsafePointer<Float>, Columns, Int),
    restart: () -> Void,
    chunkKernel: SparseChunkKernel? = nil
) throws {
    if batch < 8 {
        // A vector or a thin block: nothing to reuse, gather straight from x.
        restart()
        for row in rows {
            let (vals, cols, count) = nonzeros(row, 0, depth)
            sparseRowTimesDense(values: vals, columns: cols, count: count, x: x, stride: batch, width: batch,
                                y: y + row &* batch)
        }
        return
    }
    let tileWidth = min(64, batch)
    let stride = SharedSparsePanel.stride(batch: batch)
    let blockDepth = max(1, min(depth, requestedBlockDepth))
    let panelDepth = sharedPanel != nil ? depth : max(1, SharedSparsePanel.maximumRows(batch: batch) / blockDepth) &* blockDepth
    let panelRows = min(depth, panelDepth)
    let chunk = max(1, rowChunk)
    var ownBuffer: UnsafeMutablePointer<Float>?
    if sharedPanel == nil {
        ownBuffer = try FallibleAllocation.allocate(Float.self, count: panelRows &* stride, "the sparse product's x panel")
    }
    defer { FallibleAllocation.free(ownBuffer) }
    guard let panel = sharedPanel?.rows ?? ownBuffer else { return }
    let buffer = UnsafePointer(panel)
    var tileStart = 0
    while tileStart < batch {
        let width = min(tileWidth, batch &- tileStart)
        restart()
        var p0 = 0
        while p0 < depth {
            let p1 = min(depth, p0 &+ panelDepth)
            if let ownBuffer {
                SharedSparsePanel.copy(x: x, batch: batch, rows: p0 ..< p1, tileStart: tileStart, width: width,
                                       stride: stride, into: ownBuffer)
            }
            var c0 = rows.lowerBound
            while c0 < rows.upperBound {
                let c1 = min(rows.upperBound, c0 &+ chunk)
                var k0 = p0
                while k0 < p1 {
                    let k1 = min(p1, k0 &+ blockDepth)
                    if let chunkKernel {
                        chunkKernel(c0 ..< c1, k0, k1, buffer, stride, p0, y + (c0 &* batch &+ tileStart), width, k0 > 0)
                    } else {
                        for row in c0 ..< c1 {
                            let (vals, cols, count) = nonzeros(row, k0, k1)
                            sparseRowTimesDense(values: vals, columns: cols, count: count, x: buffer, stride: stride,
                                                columnBase: p0, width: width, y: y + (row &* batch &+ tileStart),
                                                accumulate: k0 > 0)
                        }
                    }
                    k0 = k1
                }
                c0 = c1
            }
            p0 = p1
        }
        tileStart &+= tileWidth
    }
}

/// One chunk of rows over one block of `x` in ``blockedSparseProduct``:
/// `(rows, k0, k1, block, stride, columnBase, y, width, accumulate)`, where
/// `block` holds `x`'s rows from `columnBase` (`stride` floats apart), `y`
/// points at the first row's output (rows `batch` apart) and `width` outputs
/// per row are written (`+=` when `accumulate`).
typealias SparseChunkKernel = (
    _ rows: Range<Int>, _ k0: Int, _ k1: Int, _ block: UnsafePointer<Float>, _ stride: Int, _ columnBase: Int,
    _ y: UnsafeMutablePointer<Float>, _ width: Int, _ accumulate: Bool
) -> Void

/// Validates the shapes shared by every `W @ x` kernel and returns the
/// number of output elements `rows · n`.
func checkMatmulShapes(rows: Int, columns: Int, xRows: Int, n: Int, xCount: Int, yCount: Int) throws -> Int {
    guard rows >= 0, columns >= 0 else {
        throw SwiftPruneError.value("matrix shape (\(rows), \(columns)) has a negative dimension")
    }
    guard xRows >= 0, n >= 0 else { throw SwiftPruneError.value("x shape (\(xRows), \(n)) has a negative dimension") }
    guard xRows == columns else {
        throw SwiftPruneError.value(
            "x has \(xRows) rows but the matrix has \(columns) columns (W @ x needs x of shape (in_features, n))")
    }
    let xElements = try Shape.elementCount([xRows, n])
    guard xElements == xCount else { throw SwiftPruneError.value("x: shape (\(xRows), \(n)) needs \(xElements) elements, got \(xCount)") }
    let yElements = try Shape.elementCount([rows, n])
    guard yElements == yCount else { throw SwiftPruneError.value("y: shape (\(rows), \(n)) needs \(yElements) elements, got \(yCount)") }
    return yElements
}
