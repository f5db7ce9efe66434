/// The matmul layout of an N:M matrix: its values and group indices regrouped
/// once, in the order ``NMPackedLayout/matmul(rows:columns:n:m:packed:x:xRows:batch:y:)``
/// reads them, so that a product streams one array from front to back.
///
/// In the row-major layout of ``NMSparseMatrix`` the cache-blocked product
/// visits a short slice of each of 64 rows in turn (256 bytes of values and
/// 64 of indices for 2:4, 8 KiB apart): a new memory stream per slice that
/// the hardware prefetcher does not follow, and slices that all map to the
/// same L1 sets. Measured on the 4096² 2:4 product @ 4096×64 (AMD EPYC Zen 3,
/// 1 thread, prototype kernels on the same data, minima of 7 calls on a loaded
/// VM): 30–35 ms from the row-major arrays with software prefetch, 20–30 ms
/// from this layout (README, round 8).
///
/// Layout: rows are taken in chunks of ``rowChunk``, columns in blocks of
/// ``blockDepth(m:)``; for every chunk, every block, every row of the chunk
/// in order, one *record*: the row's `count = (k1 − k0) / m · n` values in
/// the block (float32), then their `count` group indices (`UInt8`), padded
/// with zeros to a multiple of 4 bytes so that every record starts 4-byte
/// aligned. Every row has the same records, so a row's share is
/// ``rowBytes(columns:n:m:)`` and chunk `c` starts at byte `c · rowChunk · rowBytes`.
public enum NMPackedLayout {
    /// Rows per chunk: the output rows that pass over one block of `x` while it is in L1.
    public static let rowChunk = 128

    /// Columns of `W` (rows of `x`) per block: 64 rows of a 64-column `x`
    /// tile are 16 KiB, half the 32 KiB L1 data cache of the machines
    /// measured, so the block stays there while the records stream past it.
    /// Measured on the 4096² 2:4 product @ 4096×64 (AMD EPYC Zen 3, 1 thread,
    /// a C prototype of this layout built with the toolchain's clang, medians of
    /// 11 interleaved runs, twice): blocks of 128 columns in chunks of 64 rows
    /// 18.3–18.5 ms, 64 columns in chunks of 128 rows 17.3 ms (same kernel;
    /// round 10). The chunk is the rows that reuse one block.
    public static func blockDepth(m: Int) -> Int { max(m, 64 / m * m) }

    /// Bytes of one row's records (all blocks).
    public static func rowBytes(columns: Int, n: Int, m: Int) -> Int {
        let depth = blockDepth(m: m)
        var total = 0
        var k0 = 0
        while k0 < columns {
            total += recordBytes(count: (min(columns, k0 + depth) - k0) / m * n)
            k0 += depth
        }
        return total
    }

    /// Bytes of a record of `count` values: the values, then the indices padded to 4 bytes.
    @inline(__always)
    static func recordBytes(count: Int) -> Int { count &* 4 &+ ((count &+ 3) & ~3) }

    /// Bytes of the whole layout: `rows · rowBytes`.
    /// - Throws: ``SwiftPruneError`` for a bad N:M layout or a size that overflows.
    public static func byteCount(rows: Int, columns: Int, n: Int, m: Int) throws -> Int {
        try NMSparseMatrix.checkLayout(rows: rows, columns: columns, n: n, m: m)
        let (bytes, overflow) = rows.multipliedReportingOverflow(by: rowBytes(columns: columns, n: n, m: m))
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "the packed N:M layout of \(rows) rows is too large") }
        return bytes
    }

    /// Regroups the row-major `values` / `groupIndices` of ``NMSparseMatrix``
    /// into `packed` (``byteCount(rows:columns:n:m:)`` bytes).
    /// - Throws: ``SwiftPruneError`` on a size mismatch or a group index `>= m`.
    public static func pack(
        rows: Int, columns: Int, n: Int, m: Int, values: UnsafeBufferPointer<Float>,
        groupIndices: UnsafeBufferPointer<UInt8>, into packed: UnsafeMutableRawBufferPointer
    ) throws {
        try NMSparseMatrix.checkCompressed(rows: rows, columns: columns, n: n, m: m, valueCount: values.count,
                                           indexCount: groupIndices.count)
        let bytes = try byteCount(rows: rows, columns: columns, n: n, m: m)
        guard packed.count == bytes else {
            throw SwiftPruneError.value("the packed N:M layout needs \(bytes) bytes, got \(packed.count)")
        }
        for index in groupIndices where Int(index) >= m {
            throw SwiftPruneError.value("group index \(index) is >= m = \(m)")
        }
        guard bytes > 0, let out = packed.baseAddress, let vals = values.baseAddress,
              let indices = groupIndices.baseAddress else { return }
        let perRow = columns / m * n, depth = blockDepth(m: m)
        var offset = 0
        var c0 = 0
        while c0 < rows {
            let c1 = min(rows, c0 + rowChunk)
            var k0 = 0
            while k0 < columns {
                let count = (min(columns, k0 + depth) - k0) / m * n
                let record = recordBytes(count: count)
                for row in c0 ..< c1 {
                    let start = row * perRow + k0 / m * n
                    (out + offset).copyMemory(from: vals + start, byteCount: count * 4)
                    (out + offset + count * 4).copyMemory(from: indices + start, byteCount: count)
                    (out + offset + count * 5).initializeMemory(as: UInt8.self, repeating: 0, count: record - count * 5)
                    offset += record
                }
                k0 += depth
            }
            c0 = c1
        }
    }
}
