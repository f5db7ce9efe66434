/// The fused pass for its most common shape — 2:4 along the rows, 2 to 8
/// bits, groups of a multiple of 32 columns (or one scale per row of a
/// multiple of 32 columns) — as vector code over 8 runs (32 weights) at a
/// time, in "one lane per run" form: vectors whose lane r belongs to run r.
/// In that form every per-run decision is lane-wise arithmetic, with no
/// table look-up and no branch.
///
/// Each row goes in three sweeps (so that no group waits on the one before):
///
/// 1. the 2:4 ranking — the six pairwise compares of `nm4Contiguous`, ties
///    kept by the lower index, on the same magnitude keys — and the run's two
///    kept weights `k0, k1` (at positions `q0 < q1`, `+ 0` turning -0.0 into
///    +0.0 as the staged `w · mask + 0` does) and its two pruned ones; the
///    group's min/max over the kept weights and 0 (every run has pruned +0s),
///    and the float64 sums of the pruned and kept squares;
/// 2. per group, ``QuantizationScheme/parameters(lo:hi:as:)``; then the steps
///    `s = clamp(round_half_even(k / scale))` (code − zero point) of the kept
///    weights only — the pruned ones are 0 — and the float64 sum of
///    `(k − s·scale)²` (the float32 difference is exact: Sterbenz);
/// 3. the layouts, from `s0, s1, q0, q1` with `n0, n1` their non-zero flags:
///    the `nm` layout stores the non-zero codes and then the first zero
///    ones, in position order, so its positions are
///    `(n0 ∧ n1 ? q0 : 0, n1 ? q1 : n0 ∧ q0 ≠ 0 ? q0 : 1)` and its steps
///    `(n1 ∨ q0 = 0 ? s0 : 0, s1 + (¬n1 ∧ q0 ≠ 0 ? s0 : 0))`; the `bitmask`
///    layout's flags are `n0` at `q0` and `n1` at `q1`, its codes those of
///    `s0, s1` when both are non-zero, of `s0 + s1` when one is.
///
/// At 32 weights per step every fixed-width stream advances by whole bytes
/// (the `nm` values by `2·bits` bytes, the positions and the mask bits by 4),
/// so those are stored directly; the `bitmask` values (0, 1 or 2 codes per
/// run) are joined in the lanes pairwise and written without a
/// data-dependent branch (``SpillingBitWriter``).
///
/// The arithmetic of every stored number is the scalar path's, so the bytes
/// are identical; only the float64 error sums are added in another order.
extension FusedNMQuantization {
    /// Whether ``runRows24(_:_:_:_:_:)`` handles this shape.
    static func vectorPathFits(_ shape: Shape2) -> Bool {
        shape.n == 2 && shape.m == 4 && (2 ... 8).contains(shape.bits) && shape.groupSize % 32 == 0
    }

    /// Eight runs in lane form: entry j of run r in `entries.j[r]`, as float32 bit patterns.
    struct RunLanes {
        var a: SIMD8<UInt32>, b: SIMD8<UInt32>, c: SIMD8<UInt32>, d: SIMD8<UInt32>
    }

    /// Where pass 1 reads a row's runs, 8 at a time.
    protocol RunLoader {
        /// Runs `8·chunk ..< 8·chunk + 8` of the row.
        func runs(_ chunk: Int) -> RunLanes
    }

    /// bfloat16 source: 32 bit patterns are 16 little-endian words, word i = entries 2i and 2i + 1; run r is
    /// words 2r and 2r + 1. Widening is a 16-bit shift (or a mask) of the whole vector.
    struct BFloat16Runs: RunLoader {
        let row: UnsafePointer<UInt16>
        @inline(__always)
        func runs(_ chunk: Int) -> RunLanes {
            let p = UnsafeRawPointer(row + chunk &* 32)
            let x = p.loadUnaligned(as: SIMD8<UInt32>.self), y = p.loadUnaligned(fromByteOffset: 32, as: SIMD8<UInt32>.self)
            let even = SIMD8<UInt32>(x[0], x[2], x[4], x[6], y[0], y[2], y[4], y[6])
            let odd = SIMD8<UInt32>(x[1], x[3], x[5], x[7], y[1], y[3], y[5], y[7])
            let high = SIMD8<UInt32>(repeating: 0xFFFF_0000)
            return RunLanes(a: even &<< 16, b: even & high, c: odd &<< 16, d: odd & high)
        }
    }

    /// float32 source (also a widened float16 row): a stride-4 de-interleave of 32 floats.
    struct Float32Runs: RunLoader {
        let row: UnsafePointer<UInt32>
        @inline(__always)
        func runs(_ chunk: Int) -> RunLanes {
            let p = UnsafeRawPointer(row + chunk &* 32)
            let x = p.loadUnaligned(as: SIMD16<UInt32>.self), y = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self)
            return RunLanes(a: SIMD8(x[0], x[4], x[8], x[12], y[0], y[4], y[8], y[12]),
                            b: SIMD8(x[1], x[5], x[9], x[13], y[1], y[5], y[9], y[13]),
                            c: SIMD8(x[2], x[6], x[10], x[14], y[2], y[6], y[10], y[14]),
                            d: SIMD8(x[3], x[7], x[11], x[15], y[3], y[7], y[11], y[15]))
        }
    }

    /// A little-endian bit stream like ``BitWriter``, for up to 32 bits a write, without a data-dependent
    /// branch: each write stores 8 bytes (the pending bits, zeros above) and advances by the whole bytes,
    /// so the bytes past the stream's end up to `end` may be overwritten with zeros; within 8 bytes of
    /// `end` it stores byte by byte.
    struct SpillingBitWriter {
        var out: UnsafeMutablePointer<UInt8>
        let end: UnsafeMutablePointer<UInt8>
        var accumulator: UInt64 = 0  // the pending bits (fewer than 8 between writes)
        var filled = 0

        init(_ out: UnsafeMutablePointer<UInt8>, end: UnsafeMutablePointer<UInt8>) {
            self.out = out
            self.end = end
        }

        @inline(__always)
        mutating func put(_ value: UInt64, bits: Int) {
            accumulator |= value &<< UInt64(filled)  // filled < 8, value < 2^32: no overflow
            filled &+= bits
            if end - out >= 8 {
                UnsafeMutableRawPointer(out).storeBytes(of: accumulator.littleEndian, as: UInt64.self)
            } else {
                var pending = accumulator
                for i in 0 ..< (filled + 7) / 8 {
                    out[i] = UInt8(truncatingIfNeeded: pending)
                    pending &>>= 8
                }
            }
            let bytes = filled &>> 3  // at most 4
            out += bytes
            accumulator = accumulator &>> UInt64(bytes &* 8)
            filled &= 7
        }
    }

    /// -1 where `x > y`, else 0 (one vector compare on concrete `Int32` lanes).
    @inline(__always)
    static func greater(_ x: SIMD8<Int32>, _ y: SIMD8<Int32>) -> SIMD8<Int32> {
        unsafeBitCast(x .> y, to: SIMD8<Int32>.self)
    }

    /// `mask ? x : y` for -1/0 lane masks.
    @inline(__always)
    static func select(_ mask: SIMD8<Int32>, _ x: SIMD8<Int32>, _ y: SIMD8<Int32>) -> SIMD8<Int32> {
        y.replacing(with: x, where: unsafeBitCast(mask, to: SIMDMask<SIMD8<Int32>>.self))
    }

    /// Packs 8 lanes of 4-bit values (lane r at bits 4r of a little-endian word, first lane lowest).
    @inline(__always)
    static func nibblesLowFirst(_ v: SIMD8<Int32>) -> UInt32 {
        let x = unsafeBitCast(SIMD8<UInt8>(truncatingIfNeeded: v), to: UInt64.self)
        let y = (x | (x &>> 4)) & 0x00FF_00FF_00FF_00FF
        let z = (y | (y &>> 8)) & 0x0000_FFFF_0000_FFFF
        return UInt32(truncatingIfNeeded: z | (z &>> 16))
    }

    /// Packs 8 lanes of 4-bit values, lane 2i in the high nibble of byte i (`np.packbits` order).
    @inline(__always)
    static func nibblesHighFirst(_ v: SIMD8<Int32>) -> UInt32 {
        let x = unsafeBitCast(SIMD8<UInt8>(truncatingIfNeeded: v), to: UInt64.self)
        let y = ((x &<< 4) | (x &>> 8)) & 0x00FF_00FF_00FF_00FF
        let z = (y | (y &>> 8)) & 0x0000_FFFF_0000_FFFF
        return UInt32(truncatingIfNeeded: z | (z &>> 16))
    }

    /// Float64 sums of squares in vector lanes (two chains per sum, for latency).
    struct SquareSums {
        private var low = SIMD4<Double>(), high = SIMD4<Double>()

        @inline(__always)
        mutating func add(_ a: SIMD8<Float>, _ b: SIMD8<Float>) {
            let aLow = SIMD4<Double>(a.lowHalf), aHigh = SIMD4<Double>(a.highHalf)
            let bLow = SIMD4<Double>(b.lowHalf), bHigh = SIMD4<Double>(b.highHalf)
            low.addProduct(aLow, aLow)
            high.addProduct(aHigh, aHigh)
            low.addProduct(bLow, bLow)
            high.addProduct(bHigh, bHigh)
        }

        var sum: Double { (low + high).sum() }
    }

    /// `mask ? x : y` for -1/0 lane masks, on float lanes. (Only integer compares and bit operations: on
    /// the concrete vector types they are single vector instructions, while the standard library's float
    /// compares, `replacing(with:where:)`, `pointwiseMin` and `pointwiseMax` are per-lane loops that the
    /// compiler vectorizes only in part, or not at all.)
    @inline(__always)
    static func select(_ mask: SIMD8<Int32>, _ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> {
        y.replacing(with: x, where: unsafeBitCast(mask, to: SIMDMask<SIMD8<Int32>>.self))
    }

    /// Lane-wise minimum and maximum of integers.
    @inline(__always)
    static func minimum(_ x: SIMD8<Int32>, _ y: SIMD8<Int32>) -> SIMD8<Int32> { select(greater(x, y), y, x) }

    @inline(__always)
    static func maximum(_ x: SIMD8<Int32>, _ y: SIMD8<Int32>) -> SIMD8<Int32> { select(greater(x, y), x, y) }

    /// The largest lane, by three exchanges of halves.
    @inline(__always)
    static func laneMaximum(_ v: SIMD8<Int32>) -> Int32 {
        let a = maximum(v, SIMD8(v[4], v[5], v[6], v[7], v[0], v[1], v[2], v[3]))
        let b = maximum(a, SIMD8(a[2], a[3], a[0], a[1], a[6], a[7], a[4], a[5]))
        let c = maximum(b, SIMD8(b[1], b[0], b[3], b[2], b[5], b[4], b[7], b[6]))
        return c[0]
    }

    /// Sweep 1 over one group (the chunks of 8 runs in `chunkRange`): the 2:4 ranking, the kept weights
    /// (`kept[2·chunk]`, `[2·chunk + 1]`) and their positions (`slots[chunk]`: `q0 | q1 << 2`), the sums of
    /// the pruned and of the kept squares, and the min/max of the masked group; sets the sign bit of `bad`
    /// when a weight is Inf or NaN (its key + 2^23 carries into it).
    @inline(__always)
    static func maskGroup<L: RunLoader>(
        _ loader: L, _ chunkRange: Range<Int>, kept: UnsafeMutablePointer<SIMD8<Float>>,
        slots: UnsafeMutablePointer<SIMD8<Int32>>, pruned: inout SquareSums, keptSquares: inout SquareSums,
        bad: inout SIMD8<Int32>
    ) -> (low: Float, high: Float) {
        // The largest positive weight's bits and the largest magnitude of a negative one (as Int32: a
        // float's bits order its positive values, and its magnitude bits its negative ones), from the
        // pruned +0s of every run.
        var low = SIMD8<Int32>(), high = SIMD8<Int32>()
        let sign = SIMD8<UInt32>(repeating: 0x7FFF_FFFF), exponentCarry = SIMD8<Int32>(repeating: 0x0080_0000)
        let one = SIMD8<Int32>(repeating: 1), two = SIMD8<Int32>(repeating: 2), three = SIMD8<Int32>(repeating: 3)
        for chunk in chunkRange {
            let runs = loader.runs(chunk)
            let ka = unsafeBitCast(runs.a & sign, to: SIMD8<Int32>.self)
            let kb = unsafeBitCast(runs.b & sign, to: SIMD8<Int32>.self)
            let kc = unsafeBitCast(runs.c & sign, to: SIMD8<Int32>.self)
            let kd = unsafeBitCast(runs.d & sign, to: SIMD8<Int32>.self)
            bad |= (ka &+ exponentCarry) | (kb &+ exponentCarry) | (kc &+ exponentCarry) | (kd &+ exponentCarry)
            // rank(j) = #{k : key_k > key_j, or key_k == key_j and k < j}; kept iff rank < 2.
            // As -1/0 masks: gBA = (kb > ka) etc.; key_a >= key_b is the complement of gBA.
            let gBA = greater(kb, ka), gCA = greater(kc, ka), gDA = greater(kd, ka)
            let gCB = greater(kc, kb), gDB = greater(kd, kb), gDC = greater(kd, kc)
            let keepA = greater(two, SIMD8<Int32>() &- (gBA &+ gCA &+ gDA))
            let keepB = greater(two, (one &+ gBA) &- (gCB &+ gDB))
            let keepC = greater(two, (two &+ gCA &+ gCB) &- gDC)
            let keepD = greater(two, three &+ gDA &+ gDB &+ gDC)
            let wa = unsafeBitCast(runs.a, to: SIMD8<Float>.self), wb = unsafeBitCast(runs.b, to: SIMD8<Float>.self)
            let wc = unsafeBitCast(runs.c, to: SIMD8<Float>.self), wd = unsafeBitCast(runs.d, to: SIMD8<Float>.self)
            // Exactly two kept per run: the first is a, b or c, the second b, c or d; the pruned ones likewise.
            let zero = SIMD8<Float>()
            let k0 = select(keepA, wa, select(keepB, wb, wc)) + zero  // (+ 0: a kept -0.0 becomes +0.0)
            let k1 = select(keepD, wd, select(keepC, wc, wb)) + zero
            let r0 = select(keepA, select(keepB, wc, wb), wa)
            let r1 = select(keepD, select(keepC, wb, wc), wd)
            let q0 = ~keepA & (two &+ keepB)
            let q1 = select(keepD, three, one &- keepC)
            kept[2 &* chunk] = k0
            kept[2 &* chunk &+ 1] = k1
            slots[chunk] = q0 | (q1 &<< 2)
            pruned.add(r0, r1)
            keptSquares.add(k0, k1)
            let i0 = unsafeBitCast(k0, to: SIMD8<Int32>.self), i1 = unsafeBitCast(k1, to: SIMD8<Int32>.self)
            let flip = SIMD8<Int32>(repeating: Int32.min)
            high = maximum(high, maximum(i0, i1))
            low = maximum(low, maximum(i0 ^ flip, i1 ^ flip))
        }
        let largest = laneMaximum(high), smallest = laneMaximum(low)
        return (smallest == 0 ? 0 : Float(bitPattern: UInt32(bitPattern: smallest) | 0x8000_0000),
                Float(bitPattern: UInt32(bitPattern: largest)))
    }

    /// Steps `clamp(round_half_even(x / scale), low, high)` (code − zero point), as
    /// ``quantizeGroup(_:_:_:scale:low:high:zero:codes:flags:)`` computes them — rounding before clamping
    /// to integer bounds is the same — and the dequantized `steps · scale`. (|x / scale| stays far below
    /// 2^22, where adding 1.5·2^23 rounds to an integer.)
    @inline(__always)
    static func quantizeLanes(_ x: SIMD8<Float>, _ scales: SIMD8<Float>, _ lows: SIMD8<Int32>, _ highs: SIMD8<Int32>)
        -> (SIMD8<Int32>, SIMD8<Float>) {
        let bias = SIMD8<Int32>(repeating: 0x4B40_0000), magic = SIMD8<Float>(repeating: 12_582_912)
        let rounded = unsafeBitCast(x / scales + magic, to: SIMD8<Int32>.self) &- bias
        let steps = minimum(maximum(rounded, lows), highs)
        let value = unsafeBitCast(steps &+ bias, to: SIMD8<Float>.self) - magic  // Float(steps), exactly
        return (steps, value * scales)
    }

    /// Sweep 1 over a row, for every group: its range in `ranges[2·group]`, `[2·group + 1]`. True if a
    /// weight is Inf or NaN. (Each sweep is a function of its own: in one large function the compiler
    /// splits the vectors into halves and spills.)
    @inline(never)
    static func maskRow<L: RunLoader>(
        _ loader: L, groups: Int, chunksPerGroup: Int, kept: UnsafeMutablePointer<SIMD8<Float>>,
        slots: UnsafeMutablePointer<SIMD8<Int32>>, ranges: UnsafeMutablePointer<Float>, pruned: inout SquareSums,
        keptSquares: inout SquareSums
    ) -> Bool {
        var bad = SIMD8<Int32>()
        for group in 0 ..< groups {
            let chunks = group &* chunksPerGroup ..< (group &+ 1) &* chunksPerGroup
            (ranges[2 &* group], ranges[2 &* group &+ 1]) = maskGroup(loader, chunks, kept: kept, slots: slots,
                                                                      pruned: &pruned, keptSquares: &keptSquares,
                                                                      bad: &bad)
        }
        return (bad & SIMD8<Int32>(repeating: Int32.min)) != SIMD8<Int32>()
    }

    /// Sweep 2 over a row: each group's scale and zero point (into `scales`, `zeroPoints` and `zeros`),
    /// the steps of its kept weights (in place of them) and the sum of their squared errors.
    @inline(never)
    static func quantizeRow(
        _ kept: UnsafeMutablePointer<SIMD8<Float>>, ranges: UnsafePointer<Float>, groups: Int, chunksPerGroup: Int,
        scheme: QuantizationScheme, scales: UnsafeMutablePointer<Float>, zeroPoints: UnsafeMutablePointer<UInt8>,
        zeros: UnsafeMutablePointer<Int32>, errors: inout SquareSums
    ) {
        let steps = UnsafeMutableRawPointer(kept).assumingMemoryBound(to: SIMD8<Int32>.self)
        let qmin = scheme.qmin, qmax = scheme.qmax
        for group in 0 ..< groups {
            let (scale, zero) = scheme.parameters(lo: ranges[2 * group], hi: ranges[2 * group + 1], as: Float.self)
            scales[group] = scale
            zeroPoints[group] = UInt8(truncatingIfNeeded: zero)
            zeros[group] = zero
            let scaleLanes = SIMD8<Float>(repeating: scale)
            let lows = SIMD8<Int32>(repeating: qmin - zero), highs = SIMD8<Int32>(repeating: qmax - zero)
            for chunk in group &* chunksPerGroup ..< (group &+ 1) &* chunksPerGroup {
                let x0 = kept[2 &* chunk], x1 = kept[2 &* chunk &+ 1]
                let (s0, dequantized0) = quantizeLanes(x0, scaleLanes, lows, highs)
                let (s1, dequantized1) = quantizeLanes(x1, scaleLanes, lows, highs)
                errors.add(x0 - dequantized0, x1 - dequantized1)
                steps[2 &* chunk] = s0
                steps[2 &* chunk &+ 1] = s1
            }
        }
    }

    /// Where sweep 3 writes: the fixed-width streams (whole bytes per 8 runs) and the bitmask values.
    struct Streams {
        var nmValues: UnsafeMutablePointer<UInt8>
        var nmValueStream: BitWriter  // bit widths other than 2, 4 and 8
        var nmPositions: UnsafeMutablePointer<UInt8>
        var maskBytes: UnsafeMutablePointer<UInt8>
        var maskValues: SpillingBitWriter
    }

    /// Sweep 3 over a row: both layouts from the kept weights' steps and positions; returns the number of
    /// non-zero codes.
    @inline(never)
    static func encodeRow(
        _ steps: UnsafePointer<SIMD8<Int32>>, slots: UnsafePointer<SIMD8<Int32>>, zeros: UnsafePointer<Int32>,
        groups: Int, chunksPerGroup: Int, bits: Int, streams: inout Streams
    ) -> Int {
        let valueMask = SIMD8<Int32>(repeating: Int32((1 << bits) - 1)), b = Int32(bits)
        var nonzeroLanes = SIMD8<Int32>()  // minus the non-zero codes, per lane
        var nmValues = streams.nmValues, nmPositions = streams.nmPositions, maskBytes = streams.maskBytes
        var maskValues = streams.maskValues
        for group in 0 ..< groups {
            let zeros = SIMD8<Int32>(repeating: zeros[group])
            for chunk in group &* chunksPerGroup ..< (group &+ 1) &* chunksPerGroup {
                let s0 = steps[2 * chunk], s1 = steps[2 * chunk + 1], slot = slots[chunk]
                let q0 = slot & 3, q1 = slot &>> 2
                let n0 = ~unsafeBitCast(s0 .== SIMD8<Int32>(), to: SIMD8<Int32>.self)
                let n1 = ~unsafeBitCast(s1 .== SIMD8<Int32>(), to: SIMD8<Int32>.self)
                let atZero = unsafeBitCast(q0 .== SIMD8<Int32>(), to: SIMD8<Int32>.self)
                let both = n0 & n1
                // nm layout: positions and codes of the non-zeros, then of the first zeros.
                let t0 = s0 & (n1 | atZero), t1 = s1 &+ (s0 & ~(n1 | atZero))
                let nmField = ((t0 &+ zeros) & valueMask) | (((t1 &+ zeros) & valueMask) &<< b)
                let p0 = both & q0
                let p1 = select(n1, q1, select(n0 & ~atZero, q0, SIMD8<Int32>(repeating: 1)))
                // bitmask layout: flags (first entry of a run in the nibble's top bit) and codes.
                let eight = SIMD8<Int32>(repeating: 8)
                let flagNibble = (n0 & (eight &>> q0)) | (n1 & (eight &>> q1))
                let single = (((s0 &+ s1) &+ zeros) & valueMask) & (n0 | n1)
                let maskField = select(both, nmField, single)
                let count = n0 &+ n1  // minus the run's non-zero codes
                nonzeroLanes &+= count
                // The fixed-width streams: whole bytes per 8 runs.
                switch bits {
                case 4:
                    let packed = unsafeBitCast(SIMD8<UInt8>(truncatingIfNeeded: nmField), to: UInt64.self)
                    UnsafeMutableRawPointer(nmValues).storeBytes(of: packed.littleEndian, as: UInt64.self)
                    nmValues += 8
                case 8:
                    let packed = SIMD8<UInt16>(truncatingIfNeeded: nmField)
                    UnsafeMutableRawPointer(nmValues).storeBytes(of: packed, as: SIMD8<UInt16>.self)
                    nmValues += 16
                case 2:
                    UnsafeMutableRawPointer(nmValues).storeBytes(of: nibblesLowFirst(nmField).littleEndian, as: UInt32.self)
                    nmValues += 4
                default:
                    for r in 0 ..< 8 { streams.nmValueStream.put(UInt64(UInt32(bitPattern: nmField[r])), bits: 2 * bits) }
                }
                let positions = nibblesLowFirst(p0 | (p1 &<< 2))
                UnsafeMutableRawPointer(nmPositions).storeBytes(of: positions.littleEndian, as: UInt32.self)
                nmPositions += 4
                UnsafeMutableRawPointer(maskBytes).storeBytes(of: nibblesHighFirst(flagNibble).littleEndian, as: UInt32.self)
                maskBytes += 4
                // The bitmask layout's values: k·bits bits per run, joined pairwise in the lanes.
                let widths = (SIMD8<Int32>() &- count) &* b
                // Lanes 2i and 2i + 1 as one 64-bit lane: odd field shifted past the even one's width.
                let low32 = SIMD4<UInt64>(repeating: 0xFFFF_FFFF)
                let fields = unsafeBitCast(maskField, to: SIMD4<UInt64>.self)
                let fieldWidths = unsafeBitCast(widths, to: SIMD4<UInt64>.self)
                let evenWidths = fieldWidths & low32
                let pairFields = (fields & low32) | ((fields &>> 32) &<< evenWidths)  // at most 4·bits <= 32 bits
                let pairWidths = evenWidths &+ (fieldWidths &>> 32)
                if bits <= 4 {
                    let quad0 = pairFields[0] | pairFields[1] &<< pairWidths[0]
                    let quad1 = pairFields[2] | pairFields[3] &<< pairWidths[2]
                    maskValues.put(quad0, bits: Int(truncatingIfNeeded: pairWidths[0] &+ pairWidths[1]))
                    maskValues.put(quad1, bits: Int(truncatingIfNeeded: pairWidths[2] &+ pairWidths[3]))
                } else {
                    for r in 0 ..< 4 { maskValues.put(pairFields[r], bits: Int(truncatingIfNeeded: pairWidths[r])) }
                }
            }
        }
        streams.nmValues = nmValues
        streams.nmPositions = nmPositions
        streams.maskBytes = maskBytes
        streams.maskValues = maskValues
        var nonzeros = 0
        for j in 0 ..< 8 { nonzeros -= Int(nonzeroLanes[j]) }
        return nonzeros
    }

    /// One worker's rows on the vector path (see the type's comment).
    static func runRows24(
        _ source: Source, _ rowRange: Range<Int>, _ shape: Shape2, _ scheme: QuantizationScheme, _ out: Outputs
    ) throws -> Summary {
        var summary = Summary(nonzeros: 0, maskValueBytes: 0, norm: 0, difference: 0)
        guard !rowRange.isEmpty else { return summary }
        let columns = shape.columns, bits = shape.bits, g = shape.groupSize
        let groups = columns / g, perRow = columns / 2, chunksPerGroup = g / 32, chunks = columns / 32
        // A row in lane form: the kept weights (then their steps, in place) and their positions; each group's
        // range and zero point.
        let kept = try FallibleAllocation.allocate(SIMD8<Float>.self, count: 2 * chunks, "a row's kept weights")
        defer { FallibleAllocation.free(kept) }
        let slots = try FallibleAllocation.allocate(SIMD8<Int32>.self, count: chunks, "a row's kept positions")
        defer { FallibleAllocation.free(slots) }
        let ranges = try FallibleAllocation.allocate(Float.self, count: 2 * groups, "a row's ranges")
        defer { FallibleAllocation.free(ranges) }
        let zeros = try FallibleAllocation.allocate(Int32.self, count: groups, "a row's zero points")
        defer { FallibleAllocation.free(zeros) }
        var widened: UnsafeMutablePointer<UInt32>? = nil  // a float16 row as float32 bit patterns
        if case .float16 = source {
            widened = try FallibleAllocation.allocate(UInt32.self, count: columns, "a row of weights")
        }
        defer { if let widened { FallibleAllocation.free(widened) } }
        let steps = UnsafeRawPointer(kept).assumingMemoryBound(to: SIMD8<Int32>.self)

        let first = rowRange.lowerBound
        let nmValues = out.nmValues + first * perRow * bits / 8
        var streams = Streams(
            nmValues: nmValues, nmValueStream: BitWriter(nmValues), nmPositions: out.nmPositions + first * perRow * 2 / 8,
            maskBytes: out.maskBits + first * columns / 8,
            maskValues: SpillingBitWriter(out.maskValues + first * perRow * bits / 8,
                                          end: out.maskValues + rowRange.upperBound * perRow * bits / 8))
        var pruned = SquareSums(), keptSquares = SquareSums(), errors = SquareSums()
        var nonzeros = 0
        for row in rowRange {
            let bad: Bool
            switch source {
            case .bfloat16(let p):
                bad = maskRow(BFloat16Runs(row: p + row * columns), groups: groups, chunksPerGroup: chunksPerGroup,
                              kept: kept, slots: slots, ranges: ranges, pruned: &pruned, keptSquares: &keptSquares)
            case .float32(let p):
                let words = UnsafeRawPointer(p + row * columns).assumingMemoryBound(to: UInt32.self)
                bad = maskRow(Float32Runs(row: words), groups: groups, chunksPerGroup: chunksPerGroup,
                              kept: kept, slots: slots, ranges: ranges, pruned: &pruned, keptSquares: &keptSquares)
            case .float16(let p):
                let s = p + row * columns, widened = widened!
                #if arch(x86_64) || arch(arm64)
                for j in 0 ..< columns { widened[j] = Float(Float16(bitPattern: s[j])).bitPattern }
                #else
                for j in 0 ..< columns { widened[j] = halfToFloat(s[j]).bitPattern }
                #endif
                bad = maskRow(Float32Runs(row: UnsafePointer(widened)), groups: groups, chunksPerGroup: chunksPerGroup,
                              kept: kept, slots: slots, ranges: ranges, pruned: &pruned, keptSquares: &keptSquares)
            }
            if bad { throw SwiftPruneError.value("weights contain NaN or Inf values") }
            quantizeRow(kept, ranges: ranges, groups: groups, chunksPerGroup: chunksPerGroup, scheme: scheme,
                        scales: out.scales + row * groups, zeroPoints: out.zeroPoints + row * groups, zeros: zeros,
                        errors: &errors)
            nonzeros += encodeRow(steps, slots: slots, zeros: zeros, groups: groups, chunksPerGroup: chunksPerGroup,
                                  bits: bits, streams: &streams)
        }
        streams.nmValueStream.finish()  // (maskValues has stored its last byte)
        let prunedSum = pruned.sum
        summary.nonzeros = nonzeros
        summary.norm = prunedSum + keptSquares.sum
        summary.difference = prunedSum + errors.sum
        return summary
    }
}
