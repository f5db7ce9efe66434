import Synchronization

#if canImport(Glibc)
import Glibc
#endif
#if arch(x86_64) && canImport(Glibc)
import _Builtin_intrinsics.intel.cpuid
#endif

/// What the processor can run beyond the x86-64-v3 baseline, detected once
/// per process.
///
/// The kernels of the `SwiftPruneAVX512` module (built for x86-64-v4) run
/// only when ``hasAVX512`` is true; otherwise the portable AVX2 kernels do.
public enum CPUFeatures {
    /// The AVX-512 subsets of x86-64-v4 that the AVX-512 kernels may use.
    static let avx512Flags = ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]

    /// True when the AVX-512 kernels may run: the `flags` line of
    /// `/proc/cpuinfo` lists `avx512f avx512bw avx512cd avx512dq avx512vl`
    /// (the kernel lists them only when the OS saves the AVX-512 state), the
    /// `cpuid` instruction agrees (it does not under an emulator such as
    /// `qemu-x86_64 -cpu Haswell`, which passes the host's `/proc/cpuinfo`
    /// through), and the environment variable `SWIFTPRUNE_DISABLE_AVX512` is
    /// not set to a non-empty value other than `0`. False on other operating
    /// systems and architectures, and whenever `/proc/cpuinfo` cannot be read.
    public static let hasAVX512: Bool = detectAVX512()

    /// True when ``hasAVX512`` and the CPU also has AVX512-VNNI (`avx512_vnni`
    /// in `/proc/cpuinfo` and in `cpuid`): the int8 kernels of the
    /// `SwiftPruneAVX512VNNI` module may run.
    public static let hasAVX512VNNI: Bool = hasAVX512 && detectVNNI()

    /// Whether the AVX-512 kernels run now: ``hasAVX512`` unless a test turned
    /// them off with ``portableOnly``.
    static var useAVX512: Bool { hasAVX512 && !portableOnly.load(ordering: .relaxed) }

    /// For tests: run the portable kernels even where AVX-512 is available
    /// (both give the same results, so a change mid-call is harmless).
    static let portableOnly = Atomic<Bool>(false)

    /// Whether the AVX512-VNNI kernels run now (see ``useAVX512``).
    static var useAVX512VNNI: Bool { hasAVX512VNNI && !portableOnly.load(ordering: .relaxed) }

    static func detectVNNI() -> Bool {
        #if arch(x86_64) && os(Linux) && canImport(Glibc)
        guard let flags = cpuinfoFlags(), flags.contains("avx512_vnni") else { return false }
        var a: UInt32 = 0, b: UInt32 = 0, c: UInt32 = 0, d: UInt32 = 0
        guard __get_cpuid_count(7, 0, &a, &b, &c, &d) != 0 else { return false }
        return c & (1 << 11) != 0  // AVX512_VNNI
        #else
        return false
        #endif
    }

    static func detectAVX512() -> Bool {
        #if arch(x86_64) && os(Linux) && canImport(Glibc)
        if let raw = getenv("SWIFTPRUNE_DISABLE_AVX512") {
            let value = String(cString: raw)
            if !value.isEmpty && value != "0" { return false }
        }
        guard let flags = cpuinfoFlags() else { return false }
        return avx512Flags.allSatisfy { flags.contains($0) } && cpuidHasAVX512()
        #else
        return false
        #endif
    }

    #if arch(x86_64) && os(Linux) && canImport(Glibc)
    /// The words of the first `flags` line of `/proc/cpuinfo`, or nil on any failure.
    static func cpuinfoFlags() -> Set<String>? {
        let fd = open("/proc/cpuinfo", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // The first processor's block is a few KiB; read until its flags line ends.
        var bytes: [UInt8] = []
        let chunk = 4096
        var buffer = [UInt8](repeating: 0, count: chunk)
        while bytes.count < 1 << 20 {
            let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, chunk) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else { return nil }
            if got == 0 { break }
            bytes.append(contentsOf: buffer[0 ..< got])
            if let line = flagsLine(bytes, complete: false) { return line }
        }
        return flagsLine(bytes, complete: true)
    }

    /// The words after `flags :` of the first line that starts with `flags`,
    /// once that line is complete (ends in a newline, or `complete`).
    static func flagsLine(_ bytes: [UInt8], complete: Bool) -> Set<String>? {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            if end == bytes.count && !complete { return nil }
            let line = bytes[start ..< end]
            if line.starts(with: Array("flags".utf8)), let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                let words = line[(colon + 1)...].split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
                return Set(words.map { String(decoding: $0, as: UTF8.self) })
            }
            start = end + 1
        }
        return nil
    }

    /// `cpuid` leaf 7 lists AVX-512 F/DQ/CD/BW/VL. (Whether the OS saves
    /// the AVX-512 state is what `/proc/cpuinfo` tells: Linux drops the flags
    /// when it does not.)
    static func cpuidHasAVX512() -> Bool {
        var a: UInt32 = 0, b: UInt32 = 0, c: UInt32 = 0, d: UInt32 = 0
        guard __get_cpuid_count(7, 0, &a, &b, &c, &d) != 0 else { return false }
        let leaf7: UInt32 = 1 << 16 | 1 << 17 | 1 << 28 | 1 << 30 | 1 << 31  // F, DQ, CD, BW, VL
        return b & leaf7 == leaf7
    }
    #endif
}
