import SwiftPruneAVX512
import SwiftPrunePrefetch

/// A float32 matrix with N:M structured sparsity, stored compressed: in
/// every run of `m` consecutive entries of a row (a *group*), at most `n`
/// are kept. `values` is `(rows, columns / m · n)` and `groupIndices` (same
/// shape, `UInt8`) gives each value's position inside its group, so the
/// value `values[r, g · n + t]` sits at column `g · m + groupIndices[r, g · n + t]`.
///
/// 2:4 halves the multiply-adds and the value storage of a layer. Rows are
/// `out_features`, columns `in_features` (PyTorch's Linear layout), and
/// ``matmul(_:)`` computes `W @ x` for `x` of shape `(columns, n)` or `(columns,)`.
public struct NMSparseMatrix {
    public let rows: Int
    public let columns: Int
    public let n: Int
    public let m: Int
    public let values: [Float]
    public let groupIndices: [UInt8]

    /// Bytes held by the values and the group indices.
    public var byteCount: Int { values.count * 4 + groupIndices.count }

    /// Compresses a 2-D matrix, keeping in every group of `m` consecutive
    /// entries of a row the `n` of largest magnitude (ties: the lower index
    /// is kept, as ``nmMask`` does). A matrix that already is N:M sparse is
    /// stored exactly.
    /// - Throws: ``SwiftPruneError`` if `dense` is not 2-D, `columns % m != 0`,
    ///   `n`/`m` are out of range, or `dense` holds NaN or Inf.
    public init(dense: TensorView<Float>, n: Int = 2, m: Int = 4) throws {
        guard dense.rank == 2 else { throw SwiftPruneError.value("NMSparseMatrix needs a 2-D matrix, got shape \(dense.shape)") }
        let rows = dense.shape[0], columns = dense.shape[1]
        try NMSparseMatrix.checkLayout(rows: rows, columns: columns, n: n, m: m)
        let count = rows * (columns / m) * n
        var values = try [Float](fallibleRepeating: 0, count: count)
        var indices = try [UInt8](fallibleRepeating: 0, count: count)
        try values.withUnsafeMutableBufferPointer { valueBuffer in
            try indices.withUnsafeMutableBufferPointer { indexBuffer in
                try NMSparseMatrix.compress(dense: dense.buffer, rows: rows, columns: columns, n: n, m: m,
                                            values: valueBuffer, groupIndices: indexBuffer)
            }
        }
        self.rows = rows
        self.columns = columns
        self.n = n
        self.m = m
        self.values = values
        self.groupIndices = indices
    }

    /// `W @ x` for `x` of shape `(columns, k)` or `(columns,)`.
    public func matmul(_ x: TensorView<Float>) throws -> Tensor<Float> {
        guard x.rank == 1 || x.rank == 2 else { throw SwiftPruneError.value("x must be 1-D or 2-D, got shape \(x.shape)") }
        let batch = x.rank == 2 ? x.shape[1] : 1
        return try Tensor.filling(shape: x.rank == 2 ? [rows, batch] : [rows]) { y in
            try values.withUnsafeBufferPointer { vals in
                try groupIndices.withUnsafeBufferPointer { indices in
                    try NMSparseMatrix.matmul(rows: rows, columns: columns, n: n, m: m, values: vals, groupIndices: indices,
                                              x: x.buffer, xRows: x.shape[0], batch: batch, y: y)
                }
            }
        }
    }

    /// The dense `(rows, columns)` matrix, zeros where entries were dropped.
    public func toDense() throws -> Tensor<Float> {
        try Tensor.filling(shape: [rows, columns]) { out in
            try values.withUnsafeBufferPointer { vals in
                try groupIndices.withUnsafeBufferPointer { indices in
                    try NMSparseMatrix.toDense(rows: rows, columns: columns, n: n, m: m, values: vals,
                                               groupIndices: indices, into: out)
                }
            }
        }
    }
}

// MARK: - Buffer-level kernels (called by the C ABI)

extension NMSparseMatrix {
    /// Checks `0 < n <= m <= 255`, `columns % m == 0` and non-negative sizes.
    public static func checkLayout(rows: Int, columns: Int, n: Int, m: Int) throws {
        guard rows >= 0, columns >= 0 else { throw SwiftPruneError.value("shape (\(rows), \(columns)) has a negative dimension") }
        guard m >= 1, m <= 255 else { throw SwiftPruneError.value("m must be in 1..255, got \(m)") }
        guard n >= 1, n <= m else { throw SwiftPruneError.value("n must be in 1..m (m = \(m)), got \(n)") }
        guard columns % m == 0 else {
            throw SwiftPruneError.value("the number of columns (\(columns)) must be a multiple of m = \(m)")
        }
        _ = try Shape.elementCount([rows, columns])
    }

    static func checkCompressed(rows: Int, columns: Int, n: Int, m: Int, valueCount: Int, indexCount: Int) throws {
        try checkLayout(rows: rows, columns: columns, n: n, m: m)
        let expected = rows * (columns / m) * n
        guard valueCount == expected, indexCount == expected else {
            throw SwiftPruneError.value("values and indices must hold rows * columns / m * n = \(expected) elements, "
                                        + "got \(valueCount) and \(indexCount)")
        }
    }

    /// Fills `values` and `groupIndices` (`rows · columns / m · n` each) from
    /// the C-order `dense` matrix; kept entries appear in ascending column order.
    public static func compress(
        dense: UnsafeBufferPointer<Float>, rows: Int, columns: Int, n: Int, m: Int,
        values: UnsafeMutableBufferPointer<Float>, groupIndices: UnsafeMutableBufferPointer<UInt8>
    ) throws {
        try checkCompressed(rows: rows, columns: columns, n: n, m: m, valueCount: values.count, indexCount: groupIndices.count)
        guard dense.count == rows * columns else {
            throw SwiftPruneError.value("dense matrix of shape (\(rows), \(columns)) needs \(rows * columns) elements, got \(dense.count)")
        }
        let groups = rows * (columns / m)
        let workers = Threading.workerCount(for: dense.count, minimumPerWorker: 1 << 16)
        // Each worker's scratch for one group (keys, kept values, kept indices), allocated here so
        // that a refusal is an error, not a trap; parts of whole cache lines, so workers share none.
        @inline(__always) func lines(_ bytes: Int) -> Int { (bytes &+ 63) & ~63 }
        let keyBytes = lines(m &* 8), valueBytes = lines((m &+ 1) &* 4), workerBytes = keyBytes &+ valueBytes &+ lines(m &+ 1)
        let scratch = try FallibleAllocation.allocate(bytes: workers &* workerBytes, "the N:M compression's scratch")
        defer { FallibleAllocation.free(scratch) }
        var finite = [Bool](repeating: true, count: workers)
        finite.withUnsafeMutableBufferPointer { finiteOut in
            parallelFor(workers: workers) { worker in
                // Branch-free: a unique key per entry, |w|'s bit pattern (ordered like |w| for
                // finite floats) then the reversed index, so that ties rank the lower index higher.
                let mine = scratch + worker &* workerBytes
                let keys = mine.bindMemory(to: UInt64.self, capacity: m)
                let keptValues = (mine + keyBytes).bindMemory(to: Float.self, capacity: m &+ 1)
                let keptIndices = (mine + (keyBytes &+ valueBytes)).bindMemory(to: UInt8.self, capacity: m &+ 1)
                var bad: UInt32 = 0
                for group in partitionRange(groups, parts: workers, index: worker) {
                    let base = group &* m
                    for i in 0 ..< m {
                        let bits = dense[base &+ i].bitPattern
                        bad |= ((bits & 0x7F80_0000) &+ 0x0080_0000) &>> 31
                        keys[i] = UInt64(bits & 0x7FFF_FFFF) &<< 8 | UInt64(255 &- i)
                    }
                    var kept = 0
                    for i in 0 ..< m {
                        var beaten = 0
                        // keys < 2^40, so the difference's top bit is set iff keys[j] > keys[i].
                        for j in 0 ..< m { beaten &+= Int(truncatingIfNeeded: (keys[i] &- keys[j]) &>> 63) }
                        keptValues[kept] = dense[base &+ i]
                        keptIndices[kept] = UInt8(truncatingIfNeeded: i)
                        kept &+= Int(truncatingIfNeeded: UInt(bitPattern: beaten &- n) &>> 63)  // beaten < n
                    }
                    let out = group &* n
                    for t in 0 ..< n {
                        values[out &+ t] = keptValues[t]
                        groupIndices[out &+ t] = keptIndices[t]
                    }
                }
                finiteOut[worker] = bad == 0
            }
        }
        guard !finite.contains(false) else { throw SwiftPruneError.value("w contains NaN or Inf") }
    }

    /// `y = W @ x` with `x` C-order `(xRows, batch)`, `xRows == columns`, and
    /// `y` `(rows, batch)`.
    /// - Throws: ``SwiftPruneError`` on a shape mismatch or a group index `>= m`.
    /// Bytes of `x` per block of ``matmul``: chunks of 16 rows pass over an L1-sized block
    /// (measured 25% faster than streaming whole rows of W over x in L2).
    static let blockBytes = 32 * 1024

    public static func matmul(
        rows: Int, columns: Int, n: Int, m: Int, values: UnsafeBufferPointer<Float>, groupIndices: UnsafeBufferPointer<UInt8>,
        x: UnsafeBufferPointer<Float>, xRows: Int, batch: Int, y: UnsafeMutableBufferPointer<Float>
    ) throws {
        try checkCompressed(rows: rows, columns: columns, n: n, m: m, valueCount: values.count, indexCount: groupIndices.count)
        let outputs = try checkMatmulShapes(rows: rows, columns: columns, xRows: xRows, n: batch, xCount: x.count, yCount: y.count)
        guard outputs > 0 else { return }
        let perRow = columns / m * n
        guard perRow > 0, let xBase = x.baseAddress, let vals = values.baseAddress, let indices = groupIndices.baseAddress,
              let yBase = y.baseAddress else {
            y.update(repeating: 0)
            return
        }
        let tileStride = (min(64, batch) + 15) & ~15
        let blockDepth = max(m, (blockBytes / 4 / tileStride) / m * m)
        let workers = Threading.workerCount(for: rows * perRow * batch, minimumPerWorker: 1 << 16)
        let avx512 = CPUFeatures.useAVX512
        let shared = try SharedSparsePanel.make(x: xBase, depth: columns, batch: batch)
        defer { shared?.free() }
        try parallelForThrowing(workers: workers) { worker in
            let myRows = partitionRange(rows, parts: workers, index: worker)
            // Every index must be < m before any is used as an offset.
            let groupWidth = UInt8(truncatingIfNeeded: m)
            var largest: UInt8 = 0
            for t in myRows.lowerBound &* perRow ..< myRows.upperBound &* perRow { largest = max(largest, indices[t]) }
            guard largest < groupWidth else { throw SwiftPruneError.value("a group index is >= m = \(m)") }
            let shift = n & (n &- 1) == 0 ? n.trailingZeroBitCount : -1
            try blockedSparseProduct(
                rows: myRows, depth: columns, x: xBase, batch: batch, y: yBase, blockDepth: blockDepth, rowChunk: 64,
                sharedPanel: shared,
                nonzeros: { row, k0, k1 in
                    let start = row &* perRow &+ (k0 / m) &* n
                    return (vals + start, GroupColumns(indices: indices + start, n: n, m: m, shift: shift, firstColumn: k0),
                            (k1 &- k0) / m &* n)
                },
                restart: {},
                chunkKernel: avx512 ? { chunk, k0, k1, block, stride, columnBase, yChunk, width, accumulate in
                    let start = chunk.lowerBound &* perRow &+ (k0 / m) &* n
                    AVX512Kernels.nmRows(
                        rowCount: chunk.count, values: vals + start, indices: indices + start, perRow: perRow,
                        n: n, m: m, shift: shift, firstColumn: k0, count: (k1 &- k0) / m &* n,
                        x: block, stride: stride, columnBase: columnBase, width: width, y: yChunk, yStride: batch,
                        accumulate: accumulate)
                } : { chunk, k0, k1, block, stride, columnBase, yChunk, width, accumulate in
                    // The AVX2 loop of the default driver, plus a prefetch of the next
                    // row's values and positions for this block: each row's slice is a
                    // new short stream (320 bytes for 2:4 at the default block) that the
                    // hardware prefetcher does not follow from row to row.
                    let count = (k1 &- k0) / m &* n
                    for row in chunk {
                        let start = row &* perRow &+ (k0 / m) &* n
                        // The last row prefetches the first row's slice of the next block.
                        let next = row &+ 1 < chunk.upperBound ? start &+ perRow
                            : k1 < columns ? chunk.lowerBound &* perRow &+ (k1 / m) &* n : -1
                        if next >= 0 {
                            let nextCount = min(count, perRow &- (next % perRow))
                            NMSparseMatrix.prefetchBytes(vals + next, nextCount &* 4)
                            NMSparseMatrix.prefetchBytes(indices + next, nextCount)
                        }
                        sparseRowTimesDense(
                            values: vals + start,
                            columns: GroupColumns(indices: indices + start, n: n, m: m, shift: shift, firstColumn: k0),
                            count: count, x: block, stride: stride, columnBase: columnBase, width: width,
                            y: yChunk + (row &- chunk.lowerBound) &* batch, accumulate: accumulate)
                    }
                })
        }
    }

    /// Prefetches the cache lines of `bytes` bytes from `start`.
    @inline(__always)
    static func prefetchBytes<P>(_ start: UnsafePointer<P>, _ bytes: Int) {
        guard bytes > 0 else { return }
        let raw = UnsafeRawPointer(start)
        var offset = 0
        while offset < bytes {
            swiftprune_prefetch_read(raw + offset)
            offset &+= 64
        }
        swiftprune_prefetch_read(raw + (bytes &- 1))
    }

    /// Writes the dense `(rows, columns)` matrix into `out`.
    public static func toDense(
        rows: Int, columns: Int, n: Int, m: Int, values: UnsafeBufferPointer<Float>, groupIndices: UnsafeBufferPointer<UInt8>,
        into out: UnsafeMutableBufferPointer<Float>
    ) throws {
        try checkCompressed(rows: rows, columns: columns, n: n, m: m, valueCount: values.count, indexCount: groupIndices.count)
        guard out.count == rows * columns else {
            throw SwiftPruneError.value("output needs \(rows * columns) elements, got \(out.count)")
        }
        for index in groupIndices where Int(index) >= m {
            throw SwiftPruneError.value("group index \(index) is >= m = \(m)")
        }
        out.update(repeating: 0)
        for t in 0 ..< values.count {
            let group = t / n
            out[group &* m &+ Int(groupIndices[t])] += values[t]
        }
    }
}
