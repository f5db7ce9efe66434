import CSwiftPrune
import SwiftPrune

/// The library version; kept equal to the Python package's `__version__` (tested).
let swiftPruneVersion: StaticString = "0.1.0"

@_cdecl("sp_version")
public func spVersion() -> UnsafePointer<CChar>? {
    UnsafeRawPointer(swiftPruneVersion.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("sp_set_num_threads")
public func spSetNumThreads(_ n: Int64) -> sp_status {
    withStatus { try Threading.setThreadCount(Int(n)) }
}

@_cdecl("sp_get_num_threads")
public func spGetNumThreads() -> Int64 {
    Int64(Threading.threadCount)
}

func checkLibrarySignatures() {
    var version = sp_version; implements(&version, spVersion)
    var setThreads = sp_set_num_threads; implements(&setThreads, spSetNumThreads)
    var getThreads = sp_get_num_threads; implements(&getThreads, spGetNumThreads)
}
