/// The entries an N:M storage layout keeps: from every run of `m` entries,
/// `n` values and their positions in the run.
///
/// A run holds at most `n` marked (non-zero) entries; all of them are kept,
/// and a run with fewer is filled up with its first unmarked entries, so
/// every run stores exactly `n` and positions increase within a run. This is
/// the file layout of pruned-then-quantized tensors (values + `ceil(log2 m)`
/// -bit positions); the values are copied as opaque elements of any width.
public enum NMRunCompaction {
    /// Compacts `runs` runs of `m` elements (C order, run after run) to `n`
    /// each; elements are copied as opaque values of `elementBytes` bytes.
    /// - Parameters:
    ///   - values: `runs · m` elements.
    ///   - keep: `runs · m` flags (non-zero = marked).
    ///   - stored: room for `runs · n` elements.
    ///   - positions: `runs · n` positions (`0 ..< m`) out.
    /// - Throws: ``SwiftPruneError`` for `!(1 <= n < m <= 256)`, an element
    ///   size other than 1, 2, 4 or 8, buffers of the wrong size, or a run with
    ///   more than `n` marked entries (naming it).
    public static func compact(
        _ values: UnsafeRawBufferPointer, elementBytes: Int, keep: UnsafeBufferPointer<UInt8>, n: Int, m: Int,
        stored: UnsafeMutableRawBufferPointer, positions: UnsafeMutableBufferPointer<UInt8>
    ) throws {
        guard [1, 2, 4, 8].contains(elementBytes) else {
            throw SwiftPruneError.value("element size must be 1, 2, 4 or 8 bytes, got \(elementBytes)")
        }
        guard values.count % elementBytes == 0, stored.count % elementBytes == 0 else {
            throw SwiftPruneError.value("buffers are not whole elements of \(elementBytes) bytes")
        }
        // Concrete element types: the generic worker below is specialized for each.
        switch elementBytes {
        case 1: try compact(values.bindMemory(to: UInt8.self), keep: keep, n: n, m: m,
                            stored: stored.bindMemory(to: UInt8.self), positions: positions)
        case 2: try compact(values.bindMemory(to: UInt16.self), keep: keep, n: n, m: m,
                            stored: stored.bindMemory(to: UInt16.self), positions: positions)
        case 4: try compact(values.bindMemory(to: UInt32.self), keep: keep, n: n, m: m,
                            stored: stored.bindMemory(to: UInt32.self), positions: positions)
        default: try compact(values.bindMemory(to: UInt64.self), keep: keep, n: n, m: m,
                             stored: stored.bindMemory(to: UInt64.self), positions: positions)
        }
    }

    private static func compact<T>(
        _ values: UnsafeBufferPointer<T>, keep: UnsafeBufferPointer<UInt8>, n: Int, m: Int,
        stored: UnsafeMutableBufferPointer<T>, positions: UnsafeMutableBufferPointer<UInt8>
    ) throws {
        guard 1 <= n, n < m, m <= 256 else {
            throw SwiftPruneError.value("an N:M layout needs 1 <= n < m <= 256, got n = \(n), m = \(m)")
        }
        guard values.count % m == 0, keep.count == values.count else {
            throw SwiftPruneError.value("\(values.count) values and \(keep.count) flags are not whole runs of \(m)")
        }
        let runs = values.count / m
        guard stored.count == runs * n, positions.count == runs * n else {
            throw SwiftPruneError.value("\(runs) runs of \(n):\(m) need \(runs * n) stored values and positions")
        }
        guard runs > 0 else { return }
        let v = values.baseAddress!, k = keep.baseAddress!, s = stored.baseAddress!, p = positions.baseAddress!
        if m <= 8 {
            try compactShortRuns(v, k, runs: runs, n: n, m: m, s, p)
            return
        }
        for run in 0 ..< runs {
            let flags = k + run * m
            var marked = 0
            for j in 0 ..< m where flags[j] != 0 { marked += 1 }
            guard marked <= n else { throw tooMany(run, marked, n, m) }
            // Unmarked entries taken, in order, to fill the run up to n.
            var fill = n - marked
            let source = v + run * m
            var out = run * n
            for j in 0 ..< m {
                let take: Bool
                if flags[j] != 0 {
                    take = true
                } else if fill > 0 {
                    fill -= 1
                    take = true
                } else {
                    take = false
                }
                if take {
                    s[out] = source[j]
                    p[out] = UInt8(truncatingIfNeeded: j)
                    out += 1
                }
            }
        }
    }

    /// The low bit of byte j of `word` (each byte made 0/1: non-zero bytes
    /// count as marked) moved to bit `shift + j`, then shifted down: one
    /// multiply gathers 4 or 8 flags into a run code (the partial products
    /// land on distinct bits, so nothing carries into the result).
    @inline(__always)
    private static func gatherFlagBits(_ word: UInt64, multiplier: UInt64, shift: UInt64) -> UInt64 {
        var x = word
        x |= x &>> 4  // bit 0 of each byte becomes the OR of its 8 bits (shifts stay inside the byte there)
        x |= x &>> 2
        x |= x &>> 1
        return ((x & 0x0101_0101_0101_0101) &* multiplier) &>> shift  // (&>> binds tighter than &*)
    }

    private static func tooMany(_ run: Int, _ marked: Int, _ n: Int, _ m: Int) -> SwiftPruneError {
        SwiftPruneError.value("run \(run) holds \(marked) non-zeros, more than n = \(n) of m = \(m)")
    }

    /// Runs of at most 8: each run's flags as an m-bit code index a table of
    /// its n positions (built once per call, 2^m entries), so a run costs one
    /// lookup and n copies instead of a branch per entry.
    private static func compactShortRuns<T>(
        _ v: UnsafePointer<T>, _ k: UnsafePointer<UInt8>, runs: Int, n: Int, m: Int,
        _ s: UnsafeMutablePointer<T>, _ p: UnsafeMutablePointer<UInt8>
    ) throws {
        let codes = 1 << m
        var table = [UInt8](repeating: 0, count: codes * n)
        var valid = [Bool](repeating: false, count: codes)
        for code in 0 ..< codes {
            let marked = (0 ..< m).filter { code >> $0 & 1 == 1 }
            guard marked.count <= n else { continue }
            let filler = (0 ..< m).filter { code >> $0 & 1 == 0 }.prefix(n - marked.count)
            for (slot, position) in (marked + filler).sorted().enumerated() {
                table[code * n + slot] = UInt8(position)
            }
            valid[code] = true
        }
        try table.withUnsafeBufferPointer { tableBuffer in
            try valid.withUnsafeBufferPointer { validBuffer in
                let t = tableBuffer.baseAddress!, ok = validBuffer.baseAddress!
                for run in 0 ..< runs {
                    let flags = k + run * m
                    let code: Int
                    if m == 4 {
                        code = Int(truncatingIfNeeded: gatherFlagBits(UInt64(UnsafeRawPointer(flags).loadUnaligned(as: UInt32.self)),
                                                                      multiplier: 0x0102_0408, shift: 24) & 0xF)
                    } else if m == 8 {
                        code = Int(truncatingIfNeeded: gatherFlagBits(UnsafeRawPointer(flags).loadUnaligned(as: UInt64.self),
                                                                      multiplier: 0x0102_0408_1020_4080, shift: 56))
                    } else {
                        var bits = 0
                        for j in 0 ..< m where flags[j] != 0 { bits |= 1 &<< j }
                        code = bits
                    }
                    guard ok[code] else {
                        throw tooMany(run, code.nonzeroBitCount, n, m)
                    }
                    let entry = t + code * n, source = v + run * m, out = run * n
                    for slot in 0 ..< n {
                        let position = entry[slot]
                        p[out + slot] = position
                        s[out + slot] = source[Int(position)]
                    }
                }
            }
        }
    }
}
