/// The fused pass for its most common shape — 2:4 along the rows, 1 to 8
/// bits, groups of a multiple of 32 columns (or one scale per row of a
/// multiple of 32 columns) — as vector code over 8 runs (32 weights) at a
/// time, in "one lane per run" form: four `SIMD8` vectors hold entry 0, 1, 2
/// and 3 of eight consecutive runs. In that form every per-run decision is
/// lane-wise arithmetic, with no table look-up and no branch:
///
/// - the 2:4 ranking is the six pairwise compares of `nm4Contiguous`
///   (ties kept by the lower index), on the same magnitude keys;
/// - a run's stored `nm` codes and positions follow from its non-zero flags
///   `f0…f3` (at most two) and steps `d0…d3` (code − zero point):
///   with `S = Σ d`, `I = Σ j·fj`, `two = (Σ f == 2)` and
///   `c = two && !f0`: position 0 is `c ? (f1 ? 1 : 2) : 0`, its step
///   `s0 = c ? (f1 ? d1 : d2) : d0`; position 1 is `I − p0 + (I == 0)` and
///   its step `S − s0` (the zero entries among the chosen ones have step 0);
/// - the `bitmask` layout's codes of a run are `s0, s1` when `two`, the one
///   non-zero `S` when one, nothing else.
///
/// At 32 weights per step every fixed-width stream advances by whole bytes
/// (the `nm` values by `2·bits` bytes, the positions and the mask bits by 4),
/// so those are stored directly; only the `bitmask` values (a variable
/// number of codes per run) go through a ``FusedNMQuantization/BitWriter``.
///
/// The arithmetic of every stored number is the scalar path's (same keys,
/// `w · mask + 0`, group min/max, ``QuantizationScheme/parameters(lo:hi:as:)``,
/// float32 division, clamp and round half to even), so the bytes are
/// identical; only the float64 error sums are added in another order.
extension FusedNMQuantization {
    /// Whether ``runRows24(_:_:_:_:_:)`` handles this shape.
    static func vectorPathFits(_ shape: Shape2) -> Bool {
        shape.n == 2 && shape.m == 4 && (1 ... 8).contains(shape.bits) && shape.groupSize % 32 == 0
    }

    /// Eight runs in lane form: entry j of run r in `entries.j[r]`, as float32 bit patterns.
    struct RunLanes {
        var a: SIMD8<UInt32>, b: SIMD8<UInt32>, c: SIMD8<UInt32>, d: SIMD8<UInt32>
    }

    /// bfloat16 source: 32 bit patterns are 16 little-endian words, word i = entries 2i and 2i + 1; run r is
    /// words 2r and 2r + 1. Widening is a 16-bit shift (or a mask) of the whole vector.
    @inline(__always)
    static func bfloat16Runs(_ p: UnsafePointer<UInt16>) -> RunLanes {
        let words = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt32>.self)
        let even = SIMD8<UInt32>(words[0], words[2], words[4], words[6], words[8], words[10], words[12], words[14])
        let odd = SIMD8<UInt32>(words[1], words[3], words[5], words[7], words[9], words[11], words[13], words[15])
        let high = SIMD8<UInt32>(repeating: 0xFFFF_0000)
        return RunLanes(a: even &<< 16, b: even & high, c: odd &<< 16, d: odd & high)
    }

    /// float32 source (also the widened float16 row): a stride-4 de-interleave of 32 floats.
    @inline(__always)
    static func float32Runs(_ p: UnsafePointer<UInt32>) -> RunLanes {
        let x = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt32>.self)
        let y = UnsafeRawPointer(p + 16).loadUnaligned(as: SIMD16<UInt32>.self)
        return RunLanes(a: SIMD8(x[0], x[4], x[8], x[12], y[0], y[4], y[8], y[12]),
                        b: SIMD8(x[1], x[5], x[9], x[13], y[1], y[5], y[9], y[13]),
                        c: SIMD8(x[2], x[6], x[10], x[14], y[2], y[6], y[10], y[14]),
                        d: SIMD8(x[3], x[7], x[11], x[15], y[3], y[7], y[11], y[15]))
    }

    /// -1 where `x > y`, else 0 (one vector compare on concrete `Int32` lanes).
    @inline(__always)
    static func greater(_ x: SIMD8<Int32>, _ y: SIMD8<Int32>) -> SIMD8<Int32> {
        unsafeBitCast(x .> y, to: SIMD8<Int32>.self)
    }

    /// `mask ? x : y` for -1/0 lane masks.
    @inline(__always)
    static func select(_ mask: SIMD8<Int32>, _ x: SIMD8<Int32>, _ y: SIMD8<Int32>) -> SIMD8<Int32> {
        (x & mask) | (y & ~mask)
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

    /// Pass 1 over one group (`chunks` steps of 8 runs, `load(i)` the i-th): the 2:4 mask, `w · mask + 0`
    /// into `masked` and `w` into `originals` (lane form), and the lanes' min/max of the masked weights and
    /// a word whose sign bit is set when a weight is Inf or NaN (its key + 2^23 carries into the sign).
    @inline(__always)
    static func maskGroup(
        _ load: (Int) -> RunLanes, chunks: Int, masked: UnsafeMutablePointer<SIMD8<Float>>,
        originals: UnsafeMutablePointer<SIMD8<Float>>
    ) -> (low: SIMD8<Float>, high: SIMD8<Float>, bad: SIMD8<Int32>) {
        var low = SIMD8<Float>(repeating: .greatestFiniteMagnitude), high = -low
        var bad = SIMD8<Int32>()
        let sign = SIMD8<UInt32>(repeating: 0x7FFF_FFFF), exponentCarry = SIMD8<Int32>(repeating: 0x0080_0000)
        let one = SIMD8<Int32>(repeating: 1), two = SIMD8<Int32>(repeating: 2), three = SIMD8<Int32>(repeating: 3)
        for chunk in 0 ..< chunks {
            let runs = load(chunk)
            let ka = unsafeBitCast(runs.a & sign, to: SIMD8<Int32>.self)
            let kb = unsafeBitCast(runs.b & sign, to: SIMD8<Int32>.self)
            let kc = unsafeBitCast(runs.c & sign, to: SIMD8<Int32>.self)
            let kd = unsafeBitCast(runs.d & sign, to: SIMD8<Int32>.self)
            bad |= (ka &+ exponentCarry) | (kb &+ exponentCarry) | (kc &+ exponentCarry) | (kd &+ exponentCarry)
            // rank(j) = #{k : key_k > key_j, or key_k == key_j and k < j}; kept iff rank < 2.
            // As -1/0 masks: gBA = (kb > ka) etc.; key_a >= key_b is the complement of gBA.
            let gBA = greater(kb, ka), gCA = greater(kc, ka), gDA = greater(kd, ka)
            let gCB = greater(kc, kb), gDB = greater(kd, kb), gDC = greater(kd, kc)
            let rankA = SIMD8<Int32>() &- (gBA &+ gCA &+ gDA)
            let rankB = (one &+ gBA) &- (gCB &+ gDB)
            let rankC = (two &+ gCA &+ gCB) &- gDC
            let rankD = three &+ gDA &+ gDB &+ gDC
            let keepA = unsafeBitCast(greater(two, rankA), to: SIMD8<UInt32>.self)
            let keepB = unsafeBitCast(greater(two, rankB), to: SIMD8<UInt32>.self)
            let keepC = unsafeBitCast(greater(two, rankC), to: SIMD8<UInt32>.self)
            let keepD = unsafeBitCast(greater(two, rankD), to: SIMD8<UInt32>.self)
            // (+ 0 turns a kept -0.0 into +0.0, as the staged path's w * 1 + 0)
            let zero = SIMD8<Float>()
            let xa = unsafeBitCast(runs.a & keepA, to: SIMD8<Float>.self) + zero
            let xb = unsafeBitCast(runs.b & keepB, to: SIMD8<Float>.self) + zero
            let xc = unsafeBitCast(runs.c & keepC, to: SIMD8<Float>.self) + zero
            let xd = unsafeBitCast(runs.d & keepD, to: SIMD8<Float>.self) + zero
            let m = masked + chunk * 4, o = originals + chunk * 4
            m[0] = xa; m[1] = xb; m[2] = xc; m[3] = xd
            o[0] = unsafeBitCast(runs.a, to: SIMD8<Float>.self); o[1] = unsafeBitCast(runs.b, to: SIMD8<Float>.self)
            o[2] = unsafeBitCast(runs.c, to: SIMD8<Float>.self); o[3] = unsafeBitCast(runs.d, to: SIMD8<Float>.self)
            low = quantizationLaneMin(quantizationLaneMin(low, xa), quantizationLaneMin(xb, quantizationLaneMin(xc, xd)))
            high = quantizationLaneMax(quantizationLaneMax(high, xa), quantizationLaneMax(xb, quantizationLaneMax(xc, xd)))
        }
        return (low, high, bad)
    }

    /// A group's steps `clamp(round_half_even(x / scale))` (code − zero point), as ``quantizeGroup(_:_:_:scale:low:high:zero:codes:flags:)``.
    @inline(__always)
    static func quantizeLanes(_ x: SIMD8<Float>, _ scales: SIMD8<Float>, _ lows: SIMD8<Float>, _ highs: SIMD8<Float>) -> SIMD8<Int32> {
        let v = x / scales
        var t = v.replacing(with: lows, where: v .< lows)
        t.replace(with: highs, where: t .> highs)
        return unsafeBitCast(t + SIMD8<Float>(repeating: 12_582_912), to: SIMD8<Int32>.self) &- SIMD8<Int32>(repeating: 0x4B40_0000)
    }

    /// One worker's rows on the vector path (see the type's comment).
    static func runRows24(
        _ source: Source, _ rowRange: Range<Int>, _ shape: Shape2, _ scheme: QuantizationScheme, _ out: Outputs
    ) throws -> Summary {
        var summary = Summary(nonzeros: 0, maskValueBytes: 0, norm: 0, difference: 0)
        guard !rowRange.isEmpty else { return summary }
        let columns = shape.columns, bits = shape.bits, g = shape.groupSize
        let groups = columns / g, perRow = columns / 2, chunks = g / 32
        // A group in lane form: the masked weights and the originals (as float32).
        let masked = try FallibleAllocation.allocate(SIMD8<Float>.self, count: g / 8, "a masked group")
        defer { FallibleAllocation.free(masked) }
        let originals = try FallibleAllocation.allocate(SIMD8<Float>.self, count: g / 8, "a group of weights")
        defer { FallibleAllocation.free(originals) }
        var widened: UnsafeMutablePointer<UInt32>? = nil  // a float16 row as float32 bit patterns
        if case .float16 = source {
            widened = try FallibleAllocation.allocate(UInt32.self, count: columns, "a row of weights")
        }
        defer { if let widened { FallibleAllocation.free(widened) } }

        let first = rowRange.lowerBound
        var nmValues = out.nmValues + first * perRow * bits / 8
        var nmValueStream = BitWriter(nmValues)  // bit widths other than 2, 4 and 8
        var nmPositions = out.nmPositions + first * perRow * 2 / 8
        var maskBytes = out.maskBits + first * columns / 8
        var maskValues = BitWriter(out.maskValues + first * perRow * bits / 8)
        let valueMask = SIMD8<Int32>(repeating: Int32((1 << bits) - 1)), b = Int32(bits)
        let qmin = scheme.qmin, qmax = scheme.qmax
        var lanes = SquaredErrorLanes()
        var nonzeroLanes = SIMD8<Int32>()  // minus the non-zero codes, per lane (reduced per row)
        var nonzeros = 0

        for row in rowRange {
            if case .float16(let p) = source, let widened {
                let s = p + row * columns
                #if arch(x86_64) || arch(arm64)
                for j in 0 ..< columns { widened[j] = Float(Float16(bitPattern: s[j])).bitPattern }
                #else
                for j in 0 ..< columns { widened[j] = halfToFloat(s[j]).bitPattern }
                #endif
            }
            for group in 0 ..< groups {
                // Pass 1: the 2:4 mask, w · mask + 0, and the group's min/max.
                let start = row * columns + group * g
                let (low, high, bad): (SIMD8<Float>, SIMD8<Float>, SIMD8<Int32>)
                switch source {
                case .bfloat16(let p):
                    (low, high, bad) = maskGroup({ bfloat16Runs(p + start + $0 * 32) }, chunks: chunks, masked: masked,
                                                 originals: originals)
                case .float32(let p):
                    let words = UnsafeRawPointer(p + start).assumingMemoryBound(to: UInt32.self)
                    (low, high, bad) = maskGroup({ float32Runs(words + $0 * 32) }, chunks: chunks, masked: masked,
                                                 originals: originals)
                case .float16:
                    let words = UnsafePointer(widened!) + group * g
                    (low, high, bad) = maskGroup({ float32Runs(words + $0 * 32) }, chunks: chunks, masked: masked,
                                                 originals: originals)
                }
                if (bad & SIMD8<Int32>(repeating: Int32.min)) != SIMD8<Int32>() {
                    throw SwiftPruneError.value("weights contain NaN or Inf values")
                }
                var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
                for j in 0 ..< 8 {
                    lo = Swift.min(lo, low[j])
                    hi = Swift.max(hi, high[j])
                }
                // Pass 2: scale, codes, error sums and the three layouts' bytes.
                let (scale, zero) = scheme.parameters(lo: lo, hi: hi, as: Float.self)
                out.scales[row * groups + group] = scale
                out.zeroPoints[row * groups + group] = UInt8(truncatingIfNeeded: zero)
                let scales = SIMD8<Float>(repeating: scale)
                let lows = SIMD8<Float>(repeating: Float(qmin - zero)), highs = SIMD8<Float>(repeating: Float(qmax - zero))
                let zeros = SIMD8<Int32>(repeating: zero)
                var tooMany = SIMD8<Int32>()  // sign bit set once a run has more than 2 non-zero codes
                for chunk in 0 ..< chunks {
                    let m = masked + chunk * 4, o = originals + chunk * 4
                    let da = quantizeLanes(m[0], scales, lows, highs), db = quantizeLanes(m[1], scales, lows, highs)
                    let dc = quantizeLanes(m[2], scales, lows, highs), dd = quantizeLanes(m[3], scales, lows, highs)
                    lanes.add(o[0], SIMD8<Float>(da) * scales)
                    lanes.add(o[1], SIMD8<Float>(db) * scales)
                    lanes.add(o[2], SIMD8<Float>(dc) * scales)
                    lanes.add(o[3], SIMD8<Float>(dd) * scales)
                    // -1 where the code is not the zero point (sign bit of d | -d).
                    let fa = (da | (SIMD8<Int32>() &- da)) &>> 31, fb = (db | (SIMD8<Int32>() &- db)) &>> 31
                    let fc = (dc | (SIMD8<Int32>() &- dc)) &>> 31, fd = (dd | (SIMD8<Int32>() &- dd)) &>> 31
                    let count = fa &+ fb &+ fc &+ fd  // minus the run's non-zero codes
                    tooMany |= count &+ 2
                    nonzeroLanes &+= count
                    let pair = unsafeBitCast(count .== SIMD8<Int32>(repeating: -2), to: SIMD8<Int32>.self)
                    let shifted = pair & ~fa  // two non-zeros, not at 0: the first stored one is at 1 or 2
                    let total = da &+ db &+ dc &+ dd
                    let s0 = select(shifted, select(fb, db, dc), da), s1 = total &- s0
                    let v0 = (s0 &+ zeros) & valueMask, v1 = (s1 &+ zeros) & valueMask
                    let nmField = v0 | (v1 &<< b)
                    let p0 = shifted & (SIMD8<Int32>(repeating: 2) &+ fb)
                    let index = SIMD8<Int32>() &- (fb &+ (fc &<< 1) &+ fd &* 3)
                    let noIndex = unsafeBitCast(index .== SIMD8<Int32>(), to: SIMD8<Int32>.self)
                    let p1 = index &- p0 &- noIndex
                    let single = ((total &+ zeros) & valueMask) & (fa | fb | fc | fd)
                    let maskField = select(pair, nmField, single)
                    let flagNibble = (fa & 8) | (fb & 4) | (fc & 2) | (fd & 1)
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
                        for r in 0 ..< 8 { nmValueStream.put(UInt64(UInt32(bitPattern: nmField[r])), bits: 2 * bits) }
                    }
                    let positions = nibblesLowFirst(p0 | (p1 &<< 2))
                    UnsafeMutableRawPointer(nmPositions).storeBytes(of: positions.littleEndian, as: UInt32.self)
                    nmPositions += 4
                    UnsafeMutableRawPointer(maskBytes).storeBytes(of: nibblesHighFirst(flagNibble).littleEndian, as: UInt32.self)
                    maskBytes += 4
                    // The bitmask layout's values: k·bits bits per run, joined pairwise in the lanes.
                    let widths = (SIMD8<Int32>() &- count) &* b
                    let evenFields = SIMD4<UInt32>(truncatingIfNeeded: SIMD4<Int32>(maskField[0], maskField[2], maskField[4], maskField[6]))
                    let oddFields = SIMD4<UInt32>(truncatingIfNeeded: SIMD4<Int32>(maskField[1], maskField[3], maskField[5], maskField[7]))
                    let evenWidths = SIMD4<UInt32>(truncatingIfNeeded: SIMD4<Int32>(widths[0], widths[2], widths[4], widths[6]))
                    let oddWidths = SIMD4<UInt32>(truncatingIfNeeded: SIMD4<Int32>(widths[1], widths[3], widths[5], widths[7]))
                    let pairFields = evenFields | (oddFields &<< evenWidths)  // at most 4·bits <= 32 bits
                    let pairWidths = evenWidths &+ oddWidths
                    if bits <= 4 {
                        let quad0 = UInt64(pairFields[0]) | UInt64(pairFields[1]) &<< UInt64(pairWidths[0])
                        let quad1 = UInt64(pairFields[2]) | UInt64(pairFields[3]) &<< UInt64(pairWidths[2])
                        maskValues.put(quad0, bits: Int(pairWidths[0] &+ pairWidths[1]))
                        maskValues.put(quad1, bits: Int(pairWidths[2] &+ pairWidths[3]))
                    } else {
                        for r in 0 ..< 4 { maskValues.put(UInt64(pairFields[r]), bits: Int(pairWidths[r])) }
                    }
                }
                if (tooMany & SIMD8<Int32>(repeating: Int32.min)) != SIMD8<Int32>() {
                    throw SwiftPruneError.value("a run of 4 holds more than 2 non-zero codes")
                }
            }
            for j in 0 ..< 8 { nonzeros -= Int(nonzeroLanes[j]) }
            nonzeroLanes = SIMD8<Int32>()
        }
        nmValueStream.finish()
        maskValues.finish()
        let (norm, difference) = lanes.sums
        summary.nonzeros = nonzeros
        summary.norm = norm
        summary.difference = difference
        return summary
    }
}
