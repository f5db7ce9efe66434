import SwiftPrunePrefetch

extension NMPackedLayout {
    /// Bytes ahead of the record in use that the product prefetches: about
    /// three 2:4 records of 128 columns (measured: 1 KiB ahead 22 ms, none 25 ms,
    /// 4 KiB 27 ms), six of the 64-column blocks used since round 10, where the
    /// C model measured no difference between 0, 1 and 2 KiB (14.5–14.8 ms).
    static let prefetchDistance = 1024

    /// `y = W @ x` from the packed layout of an N:M matrix, `x` C-order
    /// `(xRows, batch)` with `xRows == columns`, `y` `(rows, batch)`.
    ///
    /// `x` is copied, 64 columns at a time, into a 64-byte-aligned panel
    /// (rows `SharedSparsePanel.stride` floats apart) shared by every worker;
    /// workers take whole chunks of rows in turn from a shared counter and
    /// stream each chunk's records in order.
    /// The sums are those of the row-major kernel,
    /// ``NMSparseMatrix/matmul(rows:columns:n:m:values:groupIndices:x:xRows:batch:y:)``:
    /// bit for bit for 64-column tiles (one fused multiply-add per kept weight,
    /// in column order), within float32 rounding for narrower ones (whose two
    /// accumulator chains are combined per block of ``blockDepth(m:)`` columns here, per
    /// L1-sized block there).
    /// - Throws: ``SwiftPruneError`` on a size or shape mismatch, a group
    ///   index `>= m` in `packed`, or `.outOfMemory` for the panel.
    public static func matmul(
        rows: Int, columns: Int, n: Int, m: Int, packed: UnsafeRawBufferPointer,
        x: UnsafeBufferPointer<Float>, xRows: Int, batch: Int, y: UnsafeMutableBufferPointer<Float>
    ) throws {
        let bytes = try byteCount(rows: rows, columns: columns, n: n, m: m)
        guard packed.count == bytes else {
            throw SwiftPruneError.value("the packed N:M layout needs \(bytes) bytes, got \(packed.count)")
        }
        let outputs = try checkMatmulShapes(rows: rows, columns: columns, xRows: xRows, n: batch, xCount: x.count, yCount: y.count)
        guard outputs > 0 else { return }
        guard columns > 0, let xBase = x.baseAddress, let yBase = y.baseAddress, let base = packed.baseAddress else {
            y.update(repeating: 0)
            return
        }
        let stride = SharedSparsePanel.stride(batch: batch)
        let panel = try FallibleAllocation.allocate(Float.self, count: columns &* stride, "the N:M product's x panel")
        defer { FallibleAllocation.free(panel) }
        let chunks = (rows + rowChunk - 1) / rowChunk
        let work = rows &* (columns / m * n) &* batch
        let workers = min(chunks, Threading.workerCount(for: work, minimumPerWorker: 1 << 16))
        let layout = ProductLayout(rows: rows, columns: columns, n: n, m: m, rowBytes: rowBytes(columns: columns, n: n, m: m),
                                   end: base + bytes)
        // Chunks are dealt from a shared counter (parallelForChunks), not as one fixed share per
        // worker: a worker woken late (queued behind the caller on its vCPU, or behind another
        // process) then costs the call only the chunks it did not take. Each row is summed the
        // same way whoever runs its chunk, so the result does not depend on the worker count.
        var valid = [Bool](repeating: true, count: chunks)
        var tileStart = 0
        while tileStart < batch {
            let width = min(64, batch &- tileStart)
            SharedSparsePanel.copy(x: xBase, batch: batch, rows: 0 ..< columns, tileStart: tileStart, width: width,
                                   stride: stride, into: panel)
            valid.withUnsafeMutableBufferPointer { validOut in
                parallelForChunks(workers: workers, chunks: chunks) { _, chunk in
                    validOut[chunk] = layout.product(
                        chunks: chunk ..< chunk &+ 1, packed: base, panel: panel,
                        stride: stride, width: width, y: yBase + tileStart, yStride: batch)
                }
            }
            guard !valid.contains(false) else { throw SwiftPruneError.value("a group index in the packed layout is >= m = \(m)") }
            tileStart &+= 64
        }
    }
}

/// One product's constants, and the loop over a worker's chunks.
private struct ProductLayout {
    let rows: Int
    let columns: Int
    let n: Int
    let m: Int
    let rowBytes: Int
    let end: UnsafeRawPointer

    /// `y[rows of chunks, 0 ..< width] = W @ panel` for the panel's `width`
    /// columns; false (and the rest skipped) at a record holding an index `>= m`.
    @inline(__always)
    func product(chunks: Range<Int>, packed: UnsafeRawPointer, panel: UnsafePointer<Float>, stride: Int, width: Int,
                 y: UnsafeMutablePointer<Float>, yStride: Int) -> Bool {
        let depth = NMPackedLayout.blockDepth(m: m)
        let chunk = NMPackedLayout.rowChunk
        // The 2:4 kernel reads 64-column panel rows 256 bytes apart.
        let twoOfFour = n == 2 && m == 4 && width == 64 && stride == 64
        let shift = n & (n &- 1) == 0 ? n.trailingZeroBitCount : -1
        var record = packed + chunks.lowerBound &* chunk &* rowBytes
        for c in chunks {
            let c0 = c &* chunk, c1 = min(rows, c0 &+ chunk)
            var k0 = 0
            while k0 < columns {
                let count = (min(columns, k0 &+ depth) &- k0) / m &* n
                let bytes = NMPackedLayout.recordBytes(count: count)
                let block = panel + k0 &* stride
                for row in c0 ..< c1 {
                    prefetch(record + NMPackedLayout.prefetchDistance, bytes)
                    let values = record.assumingMemoryBound(to: Float.self)
                    let indices = (record + count &* 4).assumingMemoryBound(to: UInt8.self)
                    let yRow = y + row &* yStride
                    if twoOfFour {
                        guard twoOfFourRow64(values: values, indices: indices, groups: count &>> 1, x: block, y: yRow,
                                             accumulate: k0 > 0) else { return false }
                    } else {
                        guard indicesBelow(m, indices, count) else { return false }
                        sparseRowTimesDense(values: values,
                                            columns: GroupColumns(indices: indices, n: n, m: m, shift: shift, firstColumn: 0),
                                            count: count, x: block, stride: stride, width: width, y: yRow,
                                            accumulate: k0 > 0)
                    }
                    record += bytes
                }
                k0 &+= depth
            }
        }
        return true
    }

    /// Prefetches the `bytes` bytes from `start` that lie inside the layout.
    @inline(__always)
    func prefetch(_ start: UnsafeRawPointer, _ bytes: Int) {
        var line = start
        let stop = min(start + bytes, end)
        while line < stop {
            swiftprune_prefetch_read(line)
            line += 64
        }
    }
}

/// Whether the `count` indices from `p` are all `< m` (checked before any is used as an offset).
@inline(__always)
private func indicesBelow(_ m: Int, _ p: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    var largest = SIMD16<UInt8>()
    var t = 0
    while t &+ 16 <= count {
        largest = pointwiseMax(largest, UnsafeRawPointer(p + t).loadUnaligned(as: SIMD16<UInt8>.self))
        t &+= 16
    }
    var top = largest.max()
    while t < count {
        top = max(top, p[t])
        t &+= 1
    }
    return Int(top) < m
}

/// One 2:4 record times a 64-column block of `x`: `y[0 ..< 64] (+)= Σ_g
/// v[2g] · x[4g + i[2g]] + v[2g+1] · x[4g + i[2g+1]]` (`x` rows 64 floats
/// apart). The 64 outputs stay in eight AVX2 registers; each kept value is
/// broadcast and eight fused multiply-adds follow, in column order (the same
/// sums as ``sparseRowTimesDense``, bit for bit).
///
/// Every multiply-add reads its row of `x` from memory, so loads, not
/// multiply-adds, bound the loop: the indices of four groups come in one
/// 64-bit load and are decoded with shifts (a byte load per index before).
/// Measured on the 4096² product @ 4096×64 (Zen 3, 1 thread, C prototype built
/// with the toolchain's clang, medians of 11 interleaved runs, twice): 17.3 ms
/// with a byte load per index, 15.7–15.8 ms with a 64-bit load per four groups.
///
/// An index is masked to its two low bits before it becomes an offset, so a
/// corrupt record never reads outside the block; the bits masked off are
/// collected, and false is returned if any was set (the caller then throws
/// instead of returning `y`), which replaces a separate check pass over the indices.
@inline(__always)
private func twoOfFourRow64(
    values: UnsafePointer<Float>, indices: UnsafePointer<UInt8>, groups: Int, x: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>, accumulate: Bool
) -> Bool {
    var sums = Row64Sums(y: UnsafeMutableRawPointer(y), accumulate: accumulate)
    let groupBytes: Int = 4 &* 256  // a group: four panel rows of 64 floats
    var group = UnsafeRawPointer(x)
    var v = values, i = UnsafeRawPointer(indices)
    var outOfRange: UInt64 = 0
    var left = groups
    while left >= 4 {
        // Byte j of `word` is the j-th index; `(word & 0x03…) << 8` holds each one's row offset (· 256 bytes).
        let word = i.loadUnaligned(as: UInt64.self)
        outOfRange |= word & 0xFCFC_FCFC_FCFC_FCFC
        let offsets = word & 0x0303_0303_0303_0303
        sums.addGroup(group, (offsets & 0xFF) &<< 8, offsets & 0xFF00, v)
        sums.addGroup(group + groupBytes, (offsets &>> 8) & 0xFF00, (offsets &>> 16) & 0xFF00, v + 2)
        sums.addGroup(group + 2 &* groupBytes, (offsets &>> 24) & 0xFF00, (offsets &>> 32) & 0xFF00, v + 4)
        sums.addGroup(group + 3 &* groupBytes, (offsets &>> 40) & 0xFF00, (offsets &>> 48) & 0xFF00, v + 6)
        group += 4 &* groupBytes
        v += 8
        i += 8
        left &-= 4
    }
    while left > 0 {
        // Fewer than four groups left: a 16-bit load each (a 64-bit one could read past the layout's end).
        let pair = UInt64(i.loadUnaligned(as: UInt16.self))
        outOfRange |= pair & 0xFCFC
        let offsets = pair & 0x0303
        sums.addGroup(group, (offsets & 0xFF) &<< 8, offsets & 0xFF00, v)
        group += groupBytes
        v += 2
        i += 2
        left &-= 1
    }
    sums.store(UnsafeMutableRawPointer(y))
    return outOfRange == 0
}

/// The 64 running sums of one output row in eight AVX2 registers. A struct with
/// mutating methods, not local variables captured by a nested function: those
/// compiled to dynamic exclusivity checks (`swift_beginAccess`, 13% of the
/// samples of `perf record -e cpu-clock`) in the one-thread product: 48–51 ms
/// of CPU for the 4096² product @ 4096×64, 15–17 ms with this struct (medians
/// of 11 calls, load average 4–8).
private struct Row64Sums {
    var a0, a1, a2, a3, a4, a5, a6, a7: SIMD8<Float>

    @inline(__always)
    static func load(_ p: UnsafeRawPointer, _ lane: Int) -> SIMD8<Float> {
        p.loadUnaligned(fromByteOffset: lane &* 32, as: SIMD8<Float>.self)
    }

    /// `y[0 ..< 64]`, or zeros.
    @inline(__always)
    init(y: UnsafeMutableRawPointer, accumulate: Bool) {
        if accumulate {
            let p = UnsafeRawPointer(y)
            a0 = Self.load(p, 0); a1 = Self.load(p, 1); a2 = Self.load(p, 2); a3 = Self.load(p, 3)
            a4 = Self.load(p, 4); a5 = Self.load(p, 5); a6 = Self.load(p, 6); a7 = Self.load(p, 7)
        } else {
            a0 = SIMD8<Float>(); a1 = a0; a2 = a0; a3 = a0; a4 = a0; a5 = a0; a6 = a0; a7 = a0
        }
    }

    /// One group: the panel rows `offset0 / 256` and `offset1 / 256` after `group`, times `v[0]` and `v[1]`.
    @inline(__always)
    mutating func addGroup(_ group: UnsafeRawPointer, _ offset0: UInt64, _ offset1: UInt64, _ v: UnsafePointer<Float>) {
        let p0 = group + Int(truncatingIfNeeded: offset0), p1 = group + Int(truncatingIfNeeded: offset1)
        let s0 = SIMD8<Float>(repeating: v[0])
        a0.addProduct(s0, Self.load(p0, 0)); a1.addProduct(s0, Self.load(p0, 1))
        a2.addProduct(s0, Self.load(p0, 2)); a3.addProduct(s0, Self.load(p0, 3))
        a4.addProduct(s0, Self.load(p0, 4)); a5.addProduct(s0, Self.load(p0, 5))
        a6.addProduct(s0, Self.load(p0, 6)); a7.addProduct(s0, Self.load(p0, 7))
        let s1 = SIMD8<Float>(repeating: v[1])
        a0.addProduct(s1, Self.load(p1, 0)); a1.addProduct(s1, Self.load(p1, 1))
        a2.addProduct(s1, Self.load(p1, 2)); a3.addProduct(s1, Self.load(p1, 3))
        a4.addProduct(s1, Self.load(p1, 4)); a5.addProduct(s1, Self.load(p1, 5))
        a6.addProduct(s1, Self.load(p1, 6)); a7.addProduct(s1, Self.load(p1, 7))
    }

    @inline(__always)
    func store(_ y: UnsafeMutableRawPointer) {
        y.storeBytes(of: a0, as: SIMD8<Float>.self)
        y.storeBytes(of: a1, toByteOffset: 32, as: SIMD8<Float>.self)
        y.storeBytes(of: a2, toByteOffset: 64, as: SIMD8<Float>.self)
        y.storeBytes(of: a3, toByteOffset: 96, as: SIMD8<Float>.self)
        y.storeBytes(of: a4, toByteOffset: 128, as: SIMD8<Float>.self)
        y.storeBytes(of: a5, toByteOffset: 160, as: SIMD8<Float>.self)
        y.storeBytes(of: a6, toByteOffset: 192, as: SIMD8<Float>.self)
        y.storeBytes(of: a7, toByteOffset: 224, as: SIMD8<Float>.self)
    }
}
