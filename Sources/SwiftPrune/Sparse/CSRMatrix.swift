import SwiftPruneAVX512

/// A float32 matrix in compressed sparse row (CSR) form, the layout of
/// `scipy.sparse.csr_matrix`: the nonzeros of row `i` are
/// `values[rowOffsets[i] ..< rowOffsets[i + 1]]`, in columns
/// `columnIndices[...]` (ascending when built by ``init(dense:)``).
///
/// `W` has shape `(rows, columns)` — `(out_features, in_features)` for a
/// linear layer, as in PyTorch — and ``matmul(_:)`` computes `W @ x` for `x`
/// of shape `(columns, n)` or `(columns,)`. The static functions work on
/// borrowed buffers and are what the C ABI calls; the struct owns its arrays.
public struct CSRMatrix {
    public let rows: Int
    public let columns: Int
    /// `rows + 1` offsets into `columnIndices` and `values`, from 0 to the nonzero count.
    public let rowOffsets: [Int64]
    public let columnIndices: [Int32]
    public let values: [Float]

    /// The number of stored entries.
    public var nonzeroCount: Int { values.count }

    /// Bytes held by the three arrays.
    public var byteCount: Int { rowOffsets.count * 8 + columnIndices.count * 4 + values.count * 4 }

    /// Compresses a 2-D dense matrix, keeping its nonzero entries.
    /// - Throws: ``SwiftPruneError`` if `dense` is not 2-D, holds NaN or Inf,
    ///   or has more than `Int32.max` columns.
    public init(dense: TensorView<Float>) throws {
        guard dense.rank == 2 else { throw SwiftPruneError.value("CSRMatrix needs a 2-D matrix, got shape \(dense.shape)") }
        let rows = dense.shape[0], columns = dense.shape[1]
        var offsets = try [Int64](fallibleRepeating: 0, count: rows + 1)
        let nonzeros = try offsets.withUnsafeMutableBufferPointer {
            try CSRMatrix.countNonzeros(dense: dense.buffer, rows: rows, columns: columns, rowOffsets: $0)
        }
        var indices = try [Int32](fallibleRepeating: 0, count: nonzeros)
        var values = try [Float](fallibleRepeating: 0, count: nonzeros)
        try indices.withUnsafeMutableBufferPointer { indexBuffer in
            try values.withUnsafeMutableBufferPointer { valueBuffer in
                try offsets.withUnsafeBufferPointer {
                    try CSRMatrix.fill(dense: dense.buffer, rows: rows, columns: columns, rowOffsets: $0,
                                       columnIndices: indexBuffer, values: valueBuffer)
                }
            }
        }
        self.rows = rows
        self.columns = columns
        self.rowOffsets = offsets
        self.columnIndices = indices
        self.values = values
    }

    /// Wraps existing CSR arrays after checking them.
    /// - Throws: ``SwiftPruneError`` if the offsets are not a non-decreasing
    ///   run from 0 to `values.count` or a column index is out of range.
    public init(rows: Int, columns: Int, rowOffsets: [Int64], columnIndices: [Int32], values: [Float]) throws {
        try rowOffsets.withUnsafeBufferPointer { offsets in
            try columnIndices.withUnsafeBufferPointer { indices in
                try CSRMatrix.validate(rows: rows, columns: columns, rowOffsets: offsets, columnIndices: indices,
                                       valueCount: values.count)
                try CSRMatrix.checkIndices(rowOffsets: offsets, columnIndices: indices, columns: columns, rows: 0 ..< rows)
            }
        }
        self.rows = rows
        self.columns = columns
        self.rowOffsets = rowOffsets
        self.columnIndices = columnIndices
        self.values = values
    }

    /// `W @ x` for `x` of shape `(columns, n)` or `(columns,)`; the result has
    /// shape `(rows, n)` or `(rows,)`.
    public func matmul(_ x: TensorView<Float>) throws -> Tensor<Float> {
        guard x.rank == 1 || x.rank == 2 else { throw SwiftPruneError.value("x must be 1-D or 2-D, got shape \(x.shape)") }
        let n = x.rank == 2 ? x.shape[1] : 1
        let shape = x.rank == 2 ? [rows, n] : [rows]
        return try Tensor.filling(shape: shape) { y in
            try rowOffsets.withUnsafeBufferPointer { offsets in
                try columnIndices.withUnsafeBufferPointer { indices in
                    try values.withUnsafeBufferPointer { vals in
                        try CSRMatrix.matmul(rows: rows, columns: columns, rowOffsets: offsets, columnIndices: indices,
                                             values: vals, x: x.buffer, xRows: x.shape[0], n: n, y: y)
                    }
                }
            }
        }
    }

    /// The dense `(rows, columns)` matrix.
    public func toDense() throws -> Tensor<Float> {
        try Tensor.filling(shape: [rows, columns]) { out in
            try rowOffsets.withUnsafeBufferPointer { offsets in
                try columnIndices.withUnsafeBufferPointer { indices in
                    try values.withUnsafeBufferPointer { vals in
                        try CSRMatrix.toDense(rows: rows, columns: columns, rowOffsets: offsets, columnIndices: indices,
                                              values: vals, into: out)
                    }
                }
            }
        }
    }
}

// MARK: - Buffer-level kernels (called by the C ABI)

extension CSRMatrix {
    /// First pass of the conversion: writes `rowOffsets` (`rows + 1`
    /// entries) for the nonzeros of the C-order `dense` matrix and returns
    /// their count.
    /// - Throws: ``SwiftPruneError`` on a size mismatch or NaN/Inf in `dense`.
    public static func countNonzeros(
        dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int, rowOffsets: UnsafeMutableBufferPointer<Int64>
    ) throws -> Int {
        try checkDenseShape(dense.count, rows: rows, columns: columns)
        guard rowOffsets.count == rows + 1 else {
            throw SwiftPruneError.value("row offsets need \(rows + 1) elements, got \(rowOffsets.count)")
        }
        guard let offsets = rowOffsets.baseAddress else { return 0 }
        offsets[0] = 0
        guard rows > 0, columns > 0 else {
            for row in 0 ..< rows { offsets[row &+ 1] = 0 }
            return 0
        }
        let workers = Threading.workerCount(for: dense.count, minimumPerWorker: 1 << 16)
        var finite = [Bool](repeating: true, count: workers)
        guard let base = dense.baseAddress else { return 0 }
        finite.withUnsafeMutableBufferPointer { finiteOut in
            parallelFor(workers: workers) { worker in
                // On the bit patterns: nonzero = any bit but the sign; non-finite = all exponent bits set.
                let magnitudeMask = SIMD8<UInt32>(repeating: 0x7FFF_FFFF), exponent = SIMD8<UInt32>(repeating: 0x7F80_0000)
                var badLanes = SIMD8<UInt32>()
                var bad: UInt32 = 0
                for row in partitionRange(rows, parts: workers, index: worker) {
                    let start = UnsafeRawPointer(base + row &* columns)
                    var lanes = SIMD8<UInt32>()
                    var column = 0
                    while column &+ 8 <= columns {
                        let bits = start.loadUnaligned(fromByteOffset: column &* 4, as: SIMD8<UInt32>.self)
                        // Arithmetic, not masks (Swift's SIMD masks go lane by lane): the top bit of
                        // |bits| + 0x7FFFFFFF is set iff |w| != 0, that of exponent + 2^23 iff non-finite.
                        lanes &+= ((bits & magnitudeMask) &+ magnitudeMask) &>> 31
                        badLanes |= ((bits & exponent) &+ 0x0080_0000) &>> 31
                        column &+= 8
                    }
                    var count = Int64(lanes.wrappedSum())
                    while column < columns {
                        let bits = start.load(fromByteOffset: column &* 4, as: UInt32.self)
                        count &+= bits & 0x7FFF_FFFF != 0 ? 1 : 0
                        bad |= bits & 0x7F80_0000 == 0x7F80_0000 ? 1 : 0
                        column &+= 1
                    }
                    offsets[row &+ 1] = count
                }
                finiteOut[worker] = bad == 0 && badLanes == .zero
            }
        }
        guard !finite.contains(false) else { throw SwiftPruneError.value("w contains NaN or Inf") }
        for row in 0 ..< rows { offsets[row &+ 1] &+= offsets[row] }
        return Int(offsets[rows])
    }

    /// Second pass of the conversion: fills `columnIndices` and `values` from
    /// `dense`, at the positions given by the `rowOffsets` of the first pass.
    public static func fill(
        dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>,
        columnIndices: UnsafeMutableBufferPointer<Int32>, values: UnsafeMutableBufferPointer<Float>
    ) throws {
        try checkDenseShape(dense.count, rows: rows, columns: columns)
        guard columnIndices.count == values.count else {
            throw SwiftPruneError.value("column indices (\(columnIndices.count)) and values (\(values.count)) differ in length")
        }
        try validate(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: UnsafeBufferPointer(columnIndices),
                     valueCount: values.count)
        // Each row must hold exactly its nonzeros, or the writes would overrun.
        let workers = Threading.workerCount(for: dense.count, minimumPerWorker: 1 << 16)
        var consistent = [Bool](repeating: true, count: workers)
        // Each worker's row scratch (one spare slot), allocated here: one refusal before any work
        // (allocated in parallelForThrowing's workers, the peak would be the same, the failure later).
        let rowScratch = columns &+ 1
        let allIndices = try FallibleAllocation.allocate(Int32.self, count: workers * rowScratch, "the CSR row scratch")
        defer { FallibleAllocation.free(allIndices) }
        let allValues = try FallibleAllocation.allocate(Float.self, count: workers * rowScratch, "the CSR row scratch")
        defer { FallibleAllocation.free(allValues) }
        consistent.withUnsafeMutableBufferPointer { consistentOut in
            parallelFor(workers: workers) { worker in
                // Branch-free compaction of a row into scratch (one spare slot), then a copy.
                let scratchIndices = allIndices + worker * rowScratch, scratchValues = allValues + worker * rowScratch
                for row in partitionRange(rows, parts: workers, index: worker) {
                    let start = Int(rowOffsets[row]), end = Int(rowOffsets[row &+ 1]), first = row &* columns
                    var count = 0
                    for column in 0 ..< columns {
                        let value = dense[first &+ column]
                        scratchIndices[count] = Int32(truncatingIfNeeded: column)
                        scratchValues[count] = value
                        // 1 iff value != 0, without a branch (a compare would be one, mispredicted).
                        count &+= Int(((value.bitPattern & 0x7FFF_FFFF) &+ 0x7FFF_FFFF) &>> 31)
                    }
                    guard count == end &- start else { consistentOut[worker] = false; continue }
                    if count > 0, let indexBase = columnIndices.baseAddress, let valueBase = values.baseAddress {
                        (indexBase + start).update(from: scratchIndices, count: count)
                        (valueBase + start).update(from: scratchValues, count: count)
                    }
                }
            }
        }
        guard !consistent.contains(false) else {
            throw SwiftPruneError.value("row offsets do not match the nonzeros of the dense matrix")
        }
    }

    /// Checks the offsets: `rows + 1` of them, non-decreasing from 0 to
    /// `valueCount`, which must equal the index count. (Indices are checked by
    /// the kernels that read them.)
    public static func validate(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Int32>,
        valueCount: Int
    ) throws {
        try validate(rows: rows, columns: columns, rowOffsets: rowOffsets, indexCount: columnIndices.count,
                     valueCount: valueCount)
    }

    /// ``validate(rows:columns:rowOffsets:columnIndices:valueCount:)`` for
    /// `indexCount` column indices of any width.
    public static func validate(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, indexCount: Int, valueCount: Int
    ) throws {
        guard rows >= 0, columns >= 0 else {
            throw SwiftPruneError.value("shape (\(rows), \(columns)) has a negative dimension")
        }
        guard columns <= Int(Int32.max) else {
            throw SwiftPruneError.value("CSRMatrix supports at most \(Int32.max) columns, got \(columns)")
        }
        guard rowOffsets.count == rows + 1 else {
            throw SwiftPruneError.value("indptr must have rows + 1 = \(rows + 1) entries, got \(rowOffsets.count)")
        }
        guard indexCount == valueCount else {
            throw SwiftPruneError.value("indices (\(indexCount)) and data (\(valueCount)) differ in length")
        }
        guard rowOffsets[0] == 0 else { throw SwiftPruneError.value("indptr[0] must be 0, got \(rowOffsets[0])") }
        guard rowOffsets[rows] == Int64(valueCount) else {
            throw SwiftPruneError.value("indptr[-1] must equal the number of stored values \(valueCount), got \(rowOffsets[rows])")
        }
        for row in 0 ..< rows where rowOffsets[row &+ 1] < rowOffsets[row] {
            throw SwiftPruneError.value("indptr must be non-decreasing; indptr[\(row + 1)] < indptr[\(row)]")
        }
    }

    /// Checks that the column indices of `rows` are in `0 ..< columns`.
    /// Also returns whether every row's indices are ascending.
    @discardableResult
    static func checkIndices(
        rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Int32>, columns: Int, rows: Range<Int>
    ) throws -> Bool {
        guard !rows.isEmpty else { return true }
        // Sign bits flag the problems: (columns - 1 - c) | c < 0 iff c is out of range, and
        // next - c - 1 < 0 iff a row is not ascending (no overflow once both are in range).
        let last = Int32(truncatingIfNeeded: columns &- 1)
        var outOfRange: Int32 = 0, descending: Int32 = 0
        var outLanes = SIMD8<Int32>(), descendingLanes = SIMD8<Int32>()
        guard let pointer = columnIndices.baseAddress else { return true }  // no entries at all
        let base = UnsafeRawPointer(pointer)
        for row in rows {
            var t = Int(rowOffsets[row])
            let end = Int(rowOffsets[row &+ 1])
            while t &+ 9 <= end {
                let c = base.loadUnaligned(fromByteOffset: t &* 4, as: SIMD8<Int32>.self)
                let next = base.loadUnaligned(fromByteOffset: (t &+ 1) &* 4, as: SIMD8<Int32>.self)
                outLanes |= (SIMD8(repeating: last) &- c) | c
                descendingLanes |= next &- c &- 1
                t &+= 8
            }
            while t < end {
                let c = columnIndices[t]
                outOfRange |= (last &- c) | c
                if t &+ 1 < end { descending |= columnIndices[t &+ 1] &- c &- 1 }
                t &+= 1
            }
        }
        outOfRange |= outLanes.min() < 0 ? -1 : 0
        if outOfRange < 0 {
            for position in Int(rowOffsets[rows.lowerBound]) ..< Int(rowOffsets[rows.upperBound])
            where columnIndices[position] < 0 || columnIndices[position] > last {
                throw SwiftPruneError.value("column index \(columnIndices[position]) out of range for \(columns) columns")
            }
        }
        let sorted = descending >= 0 && descendingLanes.min() >= 0
        return sorted
    }

    /// Bytes of `x` per L1 block of ``matmul`` (see ``NMSparseMatrix``).
    static let blockBytes = 32 * 1024
    /// Bytes of `x` per L2 block of ``matmul`` for sparse rows (see there).
    static let l2BlockBytes = 128 * 1024
    /// Rows per chunk of ``matmul`` with L2 blocks: their partial sums (64
    /// floats a row) stay in L1 while the chunk passes over one block.
    static let l2RowChunk = 64

    /// `y = W @ x`: `x` is C-order `(xRows, n)` with `xRows == columns`, `y`
    /// is `(rows, n)`. Rows are split between threads by nonzero count. Runs the
    /// AVX-512 kernel where ``CPUFeatures/hasAVX512`` (same results, bit for bit).
    public static func matmul(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Int32>,
        values: UnsafeBufferPointer<Float>, x: UnsafeBufferPointer<Float>, xRows: Int, n: Int,
        y: UnsafeMutableBufferPointer<Float>
    ) throws {
        try product(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices, values: values,
                    x: x, xRows: xRows, n: n, y: y)
    }

    /// The one body of both `matmul` entries (Int32 and UInt16 column indices):
    /// the checks, then the one-vector kernel for `n == 1`, else the blocked product.
    static func product<Index: CSRColumnIndex>(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Index>,
        values: UnsafeBufferPointer<Float>, x: UnsafeBufferPointer<Float>, xRows: Int, n: Int,
        y: UnsafeMutableBufferPointer<Float>
    ) throws {
        try validate(rows: rows, columns: columns, rowOffsets: rowOffsets, indexCount: columnIndices.count,
                     valueCount: values.count)
        guard columns <= Index.columnLimit else {
            throw SwiftPruneError.value("\(Index.bitWidth)-bit column indices need at most \(Index.columnLimit) columns, got \(columns)")
        }
        let outputs = try checkMatmulShapes(rows: rows, columns: columns, xRows: xRows, n: n, xCount: x.count, yCount: y.count)
        guard outputs > 0 else { return }
        guard values.count > 0, let xBase = x.baseAddress else {
            y.update(repeating: 0)
            return
        }
        if n == 1, let indexBase = columnIndices.baseAddress, let valueBase = values.baseAddress,
           let yOut = y.baseAddress {
            return try Index.matvec(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: indexBase,
                                    values: valueBase, v: xBase, y: yOut)
        }
        try blockedMatmul(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices,
                          values: values, x: xBase, n: n, y: y)
    }

    /// The blocked product of ``matmul(rows:columns:rowOffsets:columnIndices:values:x:xRows:n:y:)``
    /// after its checks (`n > 0`, at least one nonzero), for Int32 or UInt16 column indices.
    @_specialize(where Index == Int32)
    @_specialize(where Index == UInt16)
    static func blockedMatmul<Index: CSRColumnIndex>(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Index>,
        values: UnsafeBufferPointer<Float>, x xBase: UnsafePointer<Float>, n: Int, y: UnsafeMutableBufferPointer<Float>
    ) throws {
        let nonzeros = values.count
        let (work, overflow) = (nonzeros + rows).multipliedReportingOverflow(by: n)
        let workers = Threading.workerCount(for: overflow ? Int.max : work, minimumPerWorker: 1 << 16)
        guard let vals = values.baseAddress, let indices = columnIndices.baseAddress, let yBase = y.baseAddress else { return }
        let tileStride = (min(64, n) + 15) & ~15
        let avx512 = CPUFeatures.useAVX512
        guard let offsetsBase = rowOffsets.baseAddress else { return }
        let shared = try SharedSparsePanel.make(x: xBase, depth: columns, batch: n)
        defer { shared?.free() }
        // One cursor per row, allocated once for the call; workers own disjoint row ranges.
        let allCursors = try FallibleAllocation.allocate(Int.self, count: rows, "the CSR row cursors")
        defer { FallibleAllocation.free(allCursors) }
        try parallelForThrowing(workers: workers) { worker in
            let range = balancedRows(rowOffsets, rows: rows, parts: workers, index: worker)
            let sorted = try Index.checkRows(rowOffsets: rowOffsets, columnIndices: columnIndices, columns: columns,
                                             rows: range)
            // Blocking over the depth needs each row's columns ascending (a cursor per row).
            // Dense rows: blocks of x sized to hold about 64 nonzeros of a row, when that block
            // is L1-sized. Sparser rows: blocks of x of a quarter of a small L2 (128 KiB; Zen 3
            // has 512 KiB per core), when x is larger, so the rows of x each nonzero reads come
            // from L2 rather than L3. 90% sparse 4096² @ 4096×64 on Zen 3, 1 thread: 15–17 ms
            // unblocked, 10–12 ms with these blocks (C model of this loop, block 256–1024).
            let density = Double(nonzeros) / (Double(rows) * Double(max(columns, 1)))
            let l1Rows = max(1, blockBytes / 4 / tileStride)
            let l2Rows = max(1, l2BlockBytes / 4 / tileStride)
            let blockDepth: Int
            if sorted && 64 / density <= Double(2 * l1Rows) {
                blockDepth = l1Rows
            } else if sorted && columns > 2 * l2Rows {
                blockDepth = l2Rows
            } else {
                blockDepth = columns
            }
            let segmentLines = CSRChunkKernel.segmentLines(expectedNonzeros: density * Double(blockDepth))
            let first = range.lowerBound
            let cursors = allCursors + first
            try blockedSparseProduct(
                rows: range, depth: columns, x: xBase, batch: n, y: yBase, blockDepth: blockDepth,
                rowChunk: blockDepth == l2Rows && blockDepth != l1Rows ? l2RowChunk : 16, sharedPanel: shared,
                nonzeros: { row, _, k1 in
                    let start = cursors[row &- first], rowEnd = Int(rowOffsets[row &+ 1])
                    var end = start
                    while end < rowEnd && Int(indices[end]) < k1 { end &+= 1 }
                    cursors[row &- first] = end
                    return (vals + start, IndexedColumns(indices: indices + start), end &- start)
                },
                restart: {
                    for row in range { cursors[row &- first] = Int(rowOffsets[row]) }
                },
                // The AVX-512 kernel takes Int32 indices; 16-bit ones run the AVX2 kernels there too.
                chunkKernel: avx512 && Index.self == Int32.self ? { chunk, _, k1, block, stride, columnBase, yChunk, width, accumulate in
                    AVX512Kernels.csrRows(
                        rowCount: chunk.count, values: vals, indices: UnsafeRawPointer(indices).assumingMemoryBound(to: Int32.self),
                        cursors: cursors + (chunk.lowerBound &- first),
                        rowEnds: offsetsBase + (chunk.lowerBound &+ 1), limit: Int32(truncatingIfNeeded: k1),
                        x: block, stride: stride, columnBase: columnBase, width: width, y: yChunk, yStride: n,
                        accumulate: accumulate)
                } : { chunk, _, k1, block, stride, columnBase, yChunk, width, accumulate in
                    if width == 64 {
                        CSRChunkKernel.rows64(
                            rowCount: chunk.count, values: vals, indices: indices,
                            cursors: cursors + (chunk.lowerBound &- first), rowEnds: offsetsBase + (chunk.lowerBound &+ 1),
                            limit: k1, x: block, stride: stride, columnBase: columnBase, y: yChunk, yStride: n,
                            accumulate: accumulate, segmentLines: segmentLines)
                        return
                    }
                    for row in chunk {
                        let start = cursors[row &- first], rowEnd = Int(rowOffsets[row &+ 1])
                        var end = start
                        while end < rowEnd && Int(indices[end]) < k1 { end &+= 1 }
                        cursors[row &- first] = end
                        sparseRowTimesDense(values: vals + start, columns: IndexedColumns(indices: indices + start),
                                            count: end &- start, x: block, stride: stride, columnBase: columnBase,
                                            width: width, y: yChunk + (row &- chunk.lowerBound) &* n,
                                            accumulate: accumulate)
                    }
                })
        }
    }

    /// Writes the dense `(rows, columns)` matrix into `out` (duplicate
    /// entries are summed, as SciPy does).
    public static func toDense(
        rows: Int, columns: Int, rowOffsets: UnsafeBufferPointer<Int64>, columnIndices: UnsafeBufferPointer<Int32>,
        values: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>
    ) throws {
        try validate(rows: rows, columns: columns, rowOffsets: rowOffsets, columnIndices: columnIndices, valueCount: values.count)
        try checkDenseShape(out.count, rows: rows, columns: columns)
        try checkIndices(rowOffsets: rowOffsets, columnIndices: columnIndices, columns: columns, rows: 0 ..< rows)
        out.update(repeating: 0)
        for row in 0 ..< rows {
            let base = row &* columns
            for position in Int(rowOffsets[row]) ..< Int(rowOffsets[row &+ 1]) {
                out[base &+ Int(columnIndices[position])] += values[position]
            }
        }
    }

    static func checkDenseShape(_ count: Int, rows: Int, columns: Int) throws {
        guard rows >= 0, columns >= 0 else {
            throw SwiftPruneError.value("shape (\(rows), \(columns)) has a negative dimension")
        }
        guard columns <= Int(Int32.max) else {
            throw SwiftPruneError.value("CSRMatrix supports at most \(Int32.max) columns, got \(columns)")
        }
        let expected = try Shape.elementCount([rows, columns])
        guard expected == count else {
            throw SwiftPruneError.value("dense matrix of shape (\(rows), \(columns)) needs \(expected) elements, got \(count)")
        }
    }

    /// Rows `index` of `parts` when rows are split so that each part holds
    /// about the same number of nonzeros (plus one per row, for the output).
    static func balancedRows(_ offsets: UnsafeBufferPointer<Int64>, rows: Int, parts: Int, index: Int) -> Range<Int> {
        if parts <= 1 { return 0 ..< rows }
        func boundary(_ part: Int) -> Int {
            if part == 0 { return 0 }
            if part == parts { return rows }
            let total = Double(offsets[rows]) + Double(rows)
            let target = total * Double(part) / Double(parts)
            var low = 0, high = rows
            while low < high {  // first row r with offsets[r] + r >= target
                let mid = (low + high) / 2
                if Double(offsets[mid]) + Double(mid) < target { low = mid + 1 } else { high = mid }
            }
            return low
        }
        return boundary(index) ..< boundary(index + 1)
    }
}
