/// The most common compression recipe in one streaming pass: N:M magnitude
/// pruning along the rows of a 2-D weight (runs of `m` consecutive entries),
/// then minmax quantization of what is kept with one scale per row or per
/// group of `groupSize` columns, encoded straight into the compressed file's
/// sparse layouts.
///
/// The staged pipeline widens the original to float32, computes the N:M mask,
/// applies it, quantizes, dequantizes for the report, sums the error, finds
/// the non-zeros and packs them: a dozen passes over tensor-sized
/// temporaries. Here each row is widened into a row-sized scratch (in cache),
/// and everything the file and the report need comes out of it:
///
/// - the scales (and zero points) of the row's groups;
/// - the `nm` layout: for every run, `n` stored values (its non-zero codes —
///   codes other than the zero point — filled up with its first zero codes,
///   in position order) packed at `bits` bits, and their positions in the run
///   at `ceil(log2 m)` bits;
/// - the `bitmask` layout: one bit per entry (`np.packbits` order, 1 =
///   non-zero) and the non-zero codes packed at `bits` bits, in C order;
/// - float64 sums `Σ w²` and `Σ (w − ŵ)²` (ŵ the dequantized weight) and the
///   number of non-zero codes.
///
/// Every number is computed as the staged kernels compute it (the same mask
/// ranking, `w · mask + 0`, group min/max, ``QuantizationScheme/parameters(lo:hi:as:)``,
/// float32 division and rounding half to even), so the stored bytes are
/// identical; only the error sums are added in another order. The caller
/// picks the smaller layout and drops the other.
public enum FusedNMQuantization {
    /// The original weights: float32 values, or float16 / bfloat16 bit patterns.
    public enum Source {
        case float32(UnsafePointer<Float>)
        case float16(UnsafePointer<UInt16>)
        case bfloat16(UnsafePointer<UInt16>)
    }

    /// What the pass found besides the written buffers.
    public struct Summary: Equatable, Sendable {
        /// Codes that differ from their zero point (the non-zeros of ŵ).
        public var nonzeros: Int
        /// Bytes of the `bitmask` layout's packed values.
        public var maskValueBytes: Int
        /// `Σ w²` and `Σ (w − ŵ)²` in float64.
        public var norm: Double
        public var difference: Double
    }

    /// Bytes of `count` values packed at `bits` bits.
    @inline(__always)
    public static func packedBytes(_ count: Int, bits: Int) -> Int { (count * bits + 7) / 8 }

    /// Bits per stored position in a run of `m`: `ceil(log2 m)`, at least 1.
    public static func indexBits(_ m: Int) -> Int {
        var bits = 1
        while (1 << bits) < m { bits += 1 }
        return bits
    }

    /// Runs the pass over a `rows × columns` weight (C order).
    ///
    /// - Parameters:
    ///   - n, m: keep `n` of every `m` consecutive entries of a row (`1 <= n < m <= 256`, `m` divides `columns`).
    ///   - groupSize: columns per scale (divides `columns`); `columns` for one scale per row.
    ///   - scales: `rows · columns / groupSize` floats out.
    ///   - zeroPoints: as many zero points out (their `Int8`/`UInt8` bit patterns).
    ///   - nmValues: `packedBytes(rows·columns/m·n, bits)` bytes out.
    ///   - nmPositions: `packedBytes(rows·columns/m·n, indexBits(m))` bytes out.
    ///   - maskBits: `(rows·columns + 7) / 8` bytes out.
    ///   - maskValues: `packedBytes(rows·columns/m·n, bits)` bytes of room; the first
    ///     ``Summary/maskValueBytes`` hold the `bitmask` layout's values.
    /// - Throws: ``SwiftPruneError`` for NaN/Inf weights (as ``nmMask(_:n:m:axis:into:)``), bad sizes or
    ///   options, or `.outOfMemory` for the row scratch.
    public static func run(
        _ source: Source, rows: Int, columns: Int, n: Int, m: Int, scheme: QuantizationScheme, groupSize: Int,
        scales: UnsafeMutableBufferPointer<Float>, zeroPoints: UnsafeMutableBufferPointer<UInt8>,
        nmValues: UnsafeMutableBufferPointer<UInt8>, nmPositions: UnsafeMutableBufferPointer<UInt8>,
        maskBits: UnsafeMutableBufferPointer<UInt8>, maskValues: UnsafeMutableBufferPointer<UInt8>
    ) throws -> Summary {
        guard rows >= 0, columns >= 0, 1 <= n, n < m, m <= 256 else {
            throw SwiftPruneError.value("need rows, columns >= 0 and 1 <= n < m <= 256, got rows = \(rows), "
                                        + "columns = \(columns), n = \(n), m = \(m)")
        }
        guard columns % m == 0, groupSize >= 1, columns % groupSize == 0 else {
            throw SwiftPruneError.value("m = \(m) and group_size = \(groupSize) must divide the \(columns) columns")
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard !overflow, count <= Int.max / 16 else { throw SwiftPruneError.value("\(rows) x \(columns) is too large") }
        let stored = count / m * n, bits = scheme.bits, positionBits = indexBits(m)
        let groups = columns / groupSize
        guard scales.count == rows * groups, zeroPoints.count == rows * groups,
              nmValues.count == packedBytes(stored, bits: bits), nmPositions.count == packedBytes(stored, bits: positionBits),
              maskBits.count == (count + 7) / 8, maskValues.count == packedBytes(stored, bits: bits) else {
            throw SwiftPruneError.value("output buffers do not match a \(rows) x \(columns) weight")
        }
        guard count > 0 else { return Summary(nonzeros: 0, maskValueBytes: 0, norm: 0, difference: 0) }
        let table = try RunTable(n: n, m: m)
        defer { table.free() }
        // Workers take whole blocks of 8 rows, so each one's streams start on a byte.
        let blocks = (rows + 7) / 8
        let workers = Swift.max(1, Swift.min(blocks, Threading.workerCount(for: count, minimumPerWorker: 1 << 18)))
        var summaries = [Summary](repeating: Summary(nonzeros: 0, maskValueBytes: 0, norm: 0, difference: 0), count: workers)
        let perRow = columns / m * n
        let out = Outputs(scales: scales.baseAddress!, zeroPoints: zeroPoints.baseAddress!, nmValues: nmValues.baseAddress!,
                          nmPositions: nmPositions.baseAddress!, maskBits: maskBits.baseAddress!,
                          maskValues: maskValues.baseAddress!)
        let shape = Shape2(rows: rows, columns: columns, n: n, m: m, groupSize: groupSize, bits: bits,
                           positionBits: positionBits)
        try summaries.withUnsafeMutableBufferPointer { sums in
            let sumBase = sums.baseAddress!
            try parallelForThrowing(workers: workers) { worker in
                let blockRange = partitionRange(blocks, parts: workers, index: worker)
                let rowRange = (blockRange.lowerBound * 8) ..< Swift.min(rows, blockRange.upperBound * 8)
                sumBase[worker] = try runRows(source, rowRange, shape, scheme, table, out)
            }
        }
        // The bitmask values of worker w were written at its rows' room; move them up behind worker w - 1's.
        var total = Summary(nonzeros: 0, maskValueBytes: 0, norm: 0, difference: 0)
        var bitEnd = 0
        for worker in 0 ..< workers {
            let blockRange = partitionRange(blocks, parts: workers, index: worker)
            let firstRow = blockRange.lowerBound * 8
            let valueBits = summaries[worker].nonzeros * bits
            appendBits(from: out.maskValues + firstRow * perRow * bits / 8, bitCount: valueBits,
                       to: out.maskValues, at: bitEnd)
            bitEnd += valueBits
            total.nonzeros += summaries[worker].nonzeros
            total.norm += summaries[worker].norm
            total.difference += summaries[worker].difference
        }
        total.maskValueBytes = (bitEnd + 7) / 8
        return total
    }

    struct Outputs {
        let scales: UnsafeMutablePointer<Float>, zeroPoints: UnsafeMutablePointer<UInt8>
        let nmValues: UnsafeMutablePointer<UInt8>, nmPositions: UnsafeMutablePointer<UInt8>
        let maskBits: UnsafeMutablePointer<UInt8>, maskValues: UnsafeMutablePointer<UInt8>
    }

    struct Shape2 {
        let rows: Int, columns: Int, n: Int, m: Int, groupSize: Int, bits: Int, positionBits: Int
    }

    /// For runs of `m <= 8`: per pattern of non-zero flags (bit j = entry j),
    /// the `n` positions the layout stores (non-zeros, then the first zeros,
    /// in order) and those positions packed at `ceil(log2 m)` bits, low first
    /// (-1 for a pattern with more than `n` flags).
    struct RunTable {
        let chosen: UnsafeMutablePointer<UInt8>
        let marked: UnsafeMutablePointer<UInt8>  // the non-zero positions alone (popcount of them, then 0s)
        let positionWords: UnsafeMutablePointer<Int64>
        /// 2:4 only, per pattern: bits 0-3 the two stored positions, 4-7 the non-zero ones (unused: 0),
        /// 8-9 their count, bit 15 set (0: a pattern with more than 2 non-zeros).
        let pairs: UnsafeMutablePointer<UInt16>
        init(n: Int, m: Int) throws {
            let patterns = m <= 8 ? 1 << m : 1
            chosen = try FallibleAllocation.allocate(UInt8.self, count: patterns * n, "the run table")
            chosen.initialize(repeating: 0, count: patterns * n)
            marked = try FallibleAllocation.allocate(UInt8.self, count: patterns * n, "the run table")
            marked.initialize(repeating: 0, count: patterns * n)
            positionWords = try FallibleAllocation.allocate(Int64.self, count: patterns, "the run table")
            positionWords.initialize(repeating: -1, count: patterns)
            pairs = try FallibleAllocation.allocate(UInt16.self, count: 16, "the run table")
            pairs.initialize(repeating: 0, count: 16)
            guard m <= 8 else { return }
            let bits = FusedNMQuantization.indexBits(m)
            for pattern in 0 ..< patterns {
                let marked = pattern.nonzeroBitCount
                guard marked <= n else { continue }
                var fill = n - marked, k = 0, word: Int64 = 0, nonzero = 0
                for j in 0 ..< m where pattern & (1 << j) != 0 {
                    self.marked[pattern * n + nonzero] = UInt8(j)
                    nonzero += 1
                }
                for j in 0 ..< m {
                    var take = pattern & (1 << j) != 0
                    if !take && fill > 0 { fill -= 1; take = true }
                    if take {
                        chosen[pattern * n + k] = UInt8(j)
                        word |= Int64(j) << Int64(k * bits)
                        k += 1
                    }
                }
                positionWords[pattern] = word
                if m == 4 && n == 2 {
                    let q0 = nonzero > 0 ? Int(self.marked[pattern * n]) : 0
                    let q1 = nonzero > 1 ? Int(self.marked[pattern * n + 1]) : 0
                    let stored: Int = Int(chosen[pattern * n]) | Int(chosen[pattern * n + 1]) << 2
                    let nonzeros: Int = q0 << 4 | q1 << 6 | nonzero << 8
                    pairs[pattern] = UInt16(0x8000 | stored | nonzeros)
                }
            }
        }

        func free() {
            FallibleAllocation.free(chosen)
            FallibleAllocation.free(marked)
            FallibleAllocation.free(pairs)
            FallibleAllocation.free(positionWords)
        }
    }

    /// Little-endian bit stream (value i at the next `bits` bits, bit 0 the lowest of a byte), as `pack_bits`.
    struct BitWriter {
        var out: UnsafeMutablePointer<UInt8>
        var accumulator: UInt64 = 0
        var filled = 0

        init(_ out: UnsafeMutablePointer<UInt8>) { self.out = out }

        @inline(__always)
        mutating func put(_ value: UInt64, bits: Int) {
            accumulator |= value &<< UInt64(filled)  // filled < 32 and value < 2^32: no overflow
            filled &+= bits
            if filled >= 32 {
                UnsafeMutableRawPointer(out).storeBytes(of: UInt32(truncatingIfNeeded: accumulator).littleEndian, as: UInt32.self)
                out += 4
                accumulator &>>= 32
                filled &-= 32
            }
        }

        /// Writes the bits still held, the last byte zero-padded.
        mutating func finish() {
            while filled > 0 {
                out.pointee = UInt8(truncatingIfNeeded: accumulator)
                out += 1
                accumulator >>= 8
                filled = Swift.max(0, filled - 8)
            }
        }
    }

    /// Big-endian bit stream within each byte (`np.packbits` order).
    struct FlagWriter {
        var out: UnsafeMutablePointer<UInt8>
        var accumulator: UInt32 = 0
        var filled = 0

        init(_ out: UnsafeMutablePointer<UInt8>) { self.out = out }

        @inline(__always)
        mutating func put(_ flag: Bool) {
            accumulator = (accumulator << 1) | (flag ? 1 : 0)
            filled &+= 1
            if filled == 8 {
                out.pointee = UInt8(truncatingIfNeeded: accumulator)
                out += 1
                accumulator = 0
                filled = 0
            }
        }

        mutating func finish() {
            if filled > 0 {
                out.pointee = UInt8(truncatingIfNeeded: accumulator << UInt32(8 - filled))
                out += 1
                accumulator = 0
                filled = 0
            }
        }
    }

    /// One group's codes `clamp(round_half_even(x / scale)) + zero` (quantizeRun's arithmetic, eight lanes
    /// at a time), their non-zero flags (code != zero), and the report's float64 sums of `w²` and
    /// `(w − (code − zero)·scale)²` (dequantizeValues' arithmetic).
    @inline(__always)
    static func quantizeGroup(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ count: Int, scale: Float, low: Float, high: Float,
        zero: Int32, codes: UnsafeMutablePointer<Int32>, flags: UnsafeMutablePointer<UInt8>
    ) -> (Double, Double) {
        var lanes = SquaredErrorLanes()
        let scales = SIMD8<Float>(repeating: scale), lows = SIMD8<Float>(repeating: low)
        let highs = SIMD8<Float>(repeating: high), magic = SIMD8<Float>(repeating: 12_582_912)
        let zeros = SIMD8<Int32>(repeating: zero), bias = SIMD8<Int32>(repeating: 0x4B40_0000)
        var j = 0
        while j + 8 <= count {
            let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self) / scales
            var t = v.replacing(with: lows, where: v .< lows)
            t.replace(with: highs, where: t .> highs)
            let steps = unsafeBitCast(t + magic, to: SIMD8<Int32>.self) &- bias  // code - zero
            let code = steps &+ zeros
            UnsafeMutableRawPointer(codes + j).storeBytes(of: code, as: SIMD8<Int32>.self)
            // 1 where steps != 0: the sign bit of steps | -steps (a lane-wise mask select compiles to scalar code).
            let nonzero = unsafeBitCast(steps | (SIMD8<Int32>() &- steps), to: SIMD8<UInt32>.self) &>> 31
            UnsafeMutableRawPointer(flags + j).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: nonzero), as: SIMD8<UInt8>.self)
            let dequantized = SIMD8<Float>(steps) * scales
            let a = UnsafeRawPointer(w + j).loadUnaligned(as: SIMD8<Float>.self)
            lanes.add(a, dequantized)
            j += 8
        }
        var (norm, difference) = lanes.sums
        while j < count {
            let t = Swift.min(Swift.max(x[j] / scale, low), high)
            let steps = t.roundedToInt32
            codes[j] = steps &+ zero
            flags[j] = steps != 0 ? 1 : 0
            let a = Double(w[j]), e = a - Double(Float(steps) * scale)
            norm += a * a
            difference += e * e
            j += 1
        }
        return (norm, difference)
    }

    /// One worker's rows.
    static func runRows(
        _ source: Source, _ rowRange: Range<Int>, _ shape: Shape2, _ scheme: QuantizationScheme, _ table: RunTable,
        _ out: Outputs
    ) throws -> Summary {
        if vectorPathFits(shape) { return try runRows24(source, rowRange, shape, scheme, out) }
        var summary = Summary(nonzeros: 0, maskValueBytes: 0, norm: 0, difference: 0)
        guard !rowRange.isEmpty else { return summary }
        let columns = shape.columns, n = shape.n, m = shape.m, bits = shape.bits, g = shape.groupSize
        let groups = columns / g, perRow = columns / m * n
        let widened = try FallibleAllocation.allocate(Float.self, count: columns, "a row of weights")
        defer { FallibleAllocation.free(widened) }
        let masked = try FallibleAllocation.allocate(Float.self, count: columns, "a masked row")
        defer { FallibleAllocation.free(masked) }
        let keep = try FallibleAllocation.allocate(Bool.self, count: columns, "a row's mask")
        defer { FallibleAllocation.free(keep) }
        let codes = try FallibleAllocation.allocate(Int32.self, count: columns, "a row's codes")
        defer { FallibleAllocation.free(codes) }
        let flags = try FallibleAllocation.allocate(UInt8.self, count: columns + 8, "a row's non-zero flags")
        defer { FallibleAllocation.free(flags) }

        let first = rowRange.lowerBound
        var nmValues = BitWriter(out.nmValues + first * perRow * bits / 8)
        var nmPositions = BitWriter(out.nmPositions + first * perRow * shape.positionBits / 8)
        var maskValues = BitWriter(out.maskValues + first * perRow * bits / 8)
        var maskBits = FlagWriter(out.maskBits + first * columns / 8)
        let alignedMask = columns % 8 == 0
        var maskBytes = out.maskBits + first * columns / 8
        let valueMask = UInt64((1 << bits) - 1), positionBits = shape.positionBits
        let qmin = scheme.qmin, qmax = scheme.qmax
        // Runs whose n codes fit one write of at most 32 bits (2:4 int4: 8 bits) go through the table whole.
        let wholeRuns = m <= 8 && n * bits <= 32 && n * positionBits <= 32
        var norm = 0.0, difference = 0.0, nonzeros = 0

        for row in rowRange {
            // 1. The row as float32 (the staged path's widened copy, one row of it).
            let weights: UnsafePointer<Float>
            switch source {
            case .float32(let p):
                weights = p + row * columns
            case .bfloat16(let p):
                let s = p + row * columns
                for j in 0 ..< columns { widened[j] = Float(bitPattern: UInt32(s[j]) << 16) }
                weights = UnsafePointer(widened)
            case .float16(let p):
                let s = p + row * columns
                #if arch(x86_64) || arch(arm64)
                for j in 0 ..< columns { widened[j] = Float(Float16(bitPattern: s[j])) }
                #else
                for j in 0 ..< columns { widened[j] = halfToFloat(s[j]) }
                #endif
                weights = UnsafePointer(widened)
            }
            // 2. The N:M mask, by the kernels nmMask runs for runs along the last axis.
            let bad: Bool
            if m == 4 {
                bad = nm4Contiguous(weights, keep, groups: columns / 4, n: n)
            } else if m <= 64 {
                bad = nmLanes(weights, keep, groups: 0 ..< columns / m, m: m, n: n, inner: 1)
            } else {
                bad = nmGeneral(weights, keep, groups: 0 ..< columns / m, m: m, n: n, inner: 1)
            }
            if bad { throw SwiftPruneError.value("weights contain NaN or Inf values") }
            // 3. w * mask + 0 (sp_apply_mask_f32: -0.0 becomes +0.0).
            UnsafeRawPointer(keep).withMemoryRebound(to: UInt8.self, capacity: columns) { k in
                for j in 0 ..< columns { masked[j] = weights[j] * Float(k[j]) + 0 }
            }
            // 4. Each group's scale from its min/max (quantizeBuffer's minmax runs), its codes and sums.
            for group in 0 ..< groups {
                let p = masked + group * g
                let (lo, hi, _) = quantizationRangeOfRun(UnsafePointer(p), g, .greatestFiniteMagnitude, -.greatestFiniteMagnitude)
                let (scale, zero) = scheme.parameters(lo: lo, hi: hi, as: Float.self)
                out.scales[row * groups + group] = scale
                out.zeroPoints[row * groups + group] = UInt8(truncatingIfNeeded: zero)
                let (n0, d0) = quantizeGroup(p, weights + group * g, g, scale: scale, low: Float(qmin - zero),
                                             high: Float(qmax - zero), zero: zero, codes: codes + group * g,
                                             flags: flags + group * g)
                norm += n0
                difference += d0
            }
            // 5. The bitmask layout: the flags as bits (8 at a time: a multiply gathers the 0/1 bytes,
            //    first entry in the top bit), and the non-zero codes, written without a branch.
            if alignedMask {
                var j = 0
                while j < columns {
                    let eight = UnsafeRawPointer(flags + j).loadUnaligned(as: UInt64.self)
                    maskBytes.pointee = UInt8(truncatingIfNeeded: (eight &* 0x8040_2010_0804_0201) >> 56)
                    maskBytes += 1
                    j += 8
                }
            } else {
                for j in 0 ..< columns { maskBits.put(flags[j] != 0) }
            }
            // 6. Per run, the nm layout's n codes and their positions, and the bitmask layout's non-zero
            //    codes: whole runs through the table when they fit a write, else entry by entry.
            if m == 4 && n == 2 {
                // 2:4, the common case: a run's 4 codes as one word, the pattern from its 4 flag bytes by a
                // multiply (flag j to bit j), and one table entry giving both layouts' shifts: no chain of
                // dependent loads per run.
                let entries = table.pairs, b = UInt64(bits)
                // One run: its stored codes (2·bits), positions (4 bits), non-zero codes and their count.
                @inline(__always) func encode(_ run: Int) throws -> (UInt64, UInt64, UInt64, Int) {
                    let c = codes + run * 4
                    let flagWord = UnsafeRawPointer(flags + run * 4).loadUnaligned(as: UInt32.self)
                    let pattern = Int(((flagWord &* 0x0102_0408) &>> 24) & 0xF)
                    let w0: UInt64 = UInt64(truncatingIfNeeded: c[0]) & valueMask
                    let w1: UInt64 = (UInt64(truncatingIfNeeded: c[1]) & valueMask) &<< b
                    let w2: UInt64 = (UInt64(truncatingIfNeeded: c[2]) & valueMask) &<< (2 &* b)
                    let w3: UInt64 = (UInt64(truncatingIfNeeded: c[3]) & valueMask) &<< (3 &* b)
                    let word: UInt64 = w0 | w1 | w2 | w3
                    let entry = entries[pattern]
                    if entry == 0 { throw SwiftPruneError.value("a run of 4 holds more than 2 non-zero codes") }
                    let p0 = UInt64(entry & 0x3), p1 = UInt64((entry &>> 2) & 0x3)
                    let q0 = UInt64((entry &>> 4) & 0x3), q1 = UInt64((entry &>> 6) & 0x3)
                    let count = Int((entry &>> 8) & 0x3)
                    let v0: UInt64 = (word &>> (p0 &* b)) & valueMask
                    let v1: UInt64 = ((word &>> (p1 &* b)) & valueMask) &<< b
                    let u0: UInt64 = (word &>> (q0 &* b)) & valueMask
                    let u1: UInt64 = ((word &>> (q1 &* b)) & valueMask) &<< b
                    let used: UInt64 = (1 &<< UInt64(count &* bits)) &- 1
                    return (v0 | v1, p0 | (p1 &<< 2), (u0 | u1) & used, count)
                }
                let runs = columns / 4
                var run = 0
                // Two runs per write (at most 32 bits each), then an odd last one.
                while run + 2 <= runs {
                    let (values0, positions0, nonzero0, count0) = try encode(run)
                    let (values1, positions1, nonzero1, count1) = try encode(run + 1)
                    nmValues.put(values0 | values1 &<< (2 &* b), bits: 4 &* bits)
                    nmPositions.put(positions0 | positions1 &<< 4, bits: 8)
                    maskValues.put(nonzero0 | nonzero1 &<< UInt64(count0 &* bits), bits: (count0 &+ count1) &* bits)
                    nonzeros &+= count0 &+ count1
                    run += 2
                }
                if run < runs {
                    let (values, positions, nonzero, count) = try encode(run)
                    nmValues.put(values, bits: 2 &* bits)
                    nmPositions.put(positions, bits: 4)
                    maskValues.put(nonzero, bits: count &* bits)
                    nonzeros &+= count
                }
            } else if wholeRuns {
                let positionWords = table.positionWords, chosenLists = table.chosen, markedLists = table.marked
                for run in 0 ..< columns / m {
                    let c = codes + run * m, f = flags + run * m
                    var pattern = 0
                    for j in 0 ..< m { pattern |= Int(f[j]) &<< j }
                    let word = positionWords[pattern]
                    if word < 0 { throw SwiftPruneError.value("a run of \(m) holds more than \(n) non-zero codes") }
                    var values: UInt64 = 0, nonzeroValues: UInt64 = 0
                    let chosen = chosenLists + pattern * n, marked = markedLists + pattern * n
                    let count = pattern.nonzeroBitCount
                    for k in 0 ..< n {
                        values |= (UInt64(truncatingIfNeeded: c[Int(chosen[k])]) & valueMask) &<< UInt64(k * bits)
                        // (entries past `count` are position 0 with a zero shift mask: nothing added)
                        let take = UInt64(bitPattern: Int64(k < count ? -1 : 0))
                        nonzeroValues |= (UInt64(truncatingIfNeeded: c[Int(marked[k])]) & valueMask & take) &<< UInt64(k * bits)
                    }
                    nmValues.put(values, bits: n * bits)
                    nmPositions.put(UInt64(word), bits: n * positionBits)
                    maskValues.put(nonzeroValues, bits: count * bits)
                    nonzeros &+= count
                }
            } else {
                var rowNonzeros = 0
                for j in 0 ..< columns {
                    let flag = Int(flags[j])
                    maskValues.put(UInt64(truncatingIfNeeded: codes[j]) & valueMask & UInt64(bitPattern: Int64(-flag)),
                                   bits: bits &* flag)
                    rowNonzeros &+= flag
                }
                nonzeros &+= rowNonzeros
                for run in 0 ..< columns / m {
                    let c = codes + run * m, f = flags + run * m
                    var marked = 0
                    for j in 0 ..< m { marked += Int(f[j]) }
                    if marked > n { throw SwiftPruneError.value("a run of \(m) holds more than \(n) non-zero codes") }
                    var fill = n - marked
                    for j in 0 ..< m {
                        var take = f[j] != 0
                        if !take && fill > 0 { fill -= 1; take = true }
                        if take {
                            nmValues.put(UInt64(truncatingIfNeeded: c[j]) & valueMask, bits: bits)
                            nmPositions.put(UInt64(j), bits: positionBits)
                        }
                    }
                }
            }
        }
        nmValues.finish()
        nmPositions.finish()
        maskValues.finish()
        if !alignedMask { maskBits.finish() }
        summary.nonzeros = nonzeros
        summary.norm = norm
        summary.difference = difference
        return summary
    }

    #if !(arch(x86_64) || arch(arm64))
    @inline(__always)
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16, exponent = Int(h >> 10) & 0x1F, mantissa = UInt32(h & 0x3FF)
        if exponent == 0 { return Float(sign == 0 ? 1 : -1) * Float(mantissa) * 0x1p-24 }
        if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | UInt32(exponent + 112) << 23 | (mantissa << 13))
    }
    #endif

    /// Appends `bitCount` bits of a little-endian stream at `source` to the
    /// stream at `target` whose first `offset` bits are written; `source` is
    /// at or after the byte of `target` where they land (a move down), and the
    /// last byte is zero above the stream's end.
    static func appendBits(from source: UnsafeMutablePointer<UInt8>, bitCount: Int, to target: UnsafeMutablePointer<UInt8>,
                           at offset: Int) {
        guard bitCount > 0 else { return }
        let bytes = (bitCount + 7) / 8, shift = offset % 8
        let destination = target + offset / 8
        if shift == 0 {
            if destination != source { destination.update(from: source, count: bytes) }
            return
        }
        var carry = UInt16(destination.pointee) & ((1 << UInt16(shift)) - 1)
        for i in 0 ..< bytes {
            let byte = UInt16(source[i])
            destination[i] = UInt8(truncatingIfNeeded: carry | (byte << UInt16(shift)))
            carry = byte >> UInt16(8 - shift)
        }
        if shift + bitCount - (bytes - 1) * 8 > 8 { destination[bytes] = UInt8(truncatingIfNeeded: carry) }
    }
}
