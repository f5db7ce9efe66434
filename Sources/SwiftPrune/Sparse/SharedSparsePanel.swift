/// The copy of `x` that ``blockedSparseProduct`` reads: rows `stride`
/// floats apart from a 64-byte-aligned start, so no vector load splits a
/// cache line. When `x` has 8 to 64 columns and fits in one panel, the
/// caller makes this copy once for all workers (`make`) instead of each
/// worker copying (and page-faulting in) the same rows.
struct SharedSparsePanel {
    let rows: UnsafeMutablePointer<Float>

    /// Floats between panel rows for `x` of `batch` columns (tiles of at most 64).
    static func stride(batch: Int) -> Int { (min(64, batch) + 15) & ~15 }

    /// The most rows of `x` per panel: 16 MiB.
    static func maximumRows(batch: Int) -> Int { max(1, (16 << 20) / 4 / stride(batch: batch)) }

    /// The whole of `x` as one panel, or nil when it is not one tile of one
    /// panel (`batch` outside `8 ... 64`, or more than 16 MiB).
    /// - Throws: ``SwiftPruneError`` `.outOfMemory` if the panel cannot be allocated.
    static func make(x: UnsafePointer<Float>, depth: Int, batch: Int) throws -> SharedSparsePanel? {
        guard batch >= 8, batch <= 64, depth > 0, depth <= maximumRows(batch: batch) else { return nil }
        let stride = stride(batch: batch)
        let rows = try FallibleAllocation.allocate(Float.self, count: depth &* stride, "the sparse product's x panel")
        copy(x: x, batch: batch, rows: 0 ..< depth, tileStart: 0, width: batch, stride: stride, into: rows)
        return SharedSparsePanel(rows: rows)
    }

    /// Copies `x[rows, tileStart ..< tileStart + width]` to `panel`, `stride` floats a row.
    @inline(__always)
    static func copy(x: UnsafePointer<Float>, batch: Int, rows: Range<Int>, tileStart: Int, width: Int, stride: Int,
                     into panel: UnsafeMutablePointer<Float>) {
        for k in rows {
            (panel + (k &- rows.lowerBound) &* stride).update(from: x + (k &* batch &+ tileStart), count: width)
        }
    }

    func free() { FallibleAllocation.free(rows) }
}
