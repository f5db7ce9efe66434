// swift-tools-version:5.4
// (tools-version 5.4: newer versions rename an executable's main for testing, which
// clashes with the main that libFuzzer provides.)
// A libFuzzer target for the safetensors header parser, kept out of the
// main package so that its normal build never compiles it. The parser's
// sources are symbolic links to the main package's files, compiled here as a
// small module: the fuzzer instruments exactly the code that parses headers.
//
//   cd fuzz/swift
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   .build/debug/FuzzSafetensorsHeader ../corpus/safetensors -max_total_time=3600
import PackageDescription

let package = Package(
    name: "SwiftPruneFuzz",
    targets: [
        .target(name: "SafetensorsHeaderParser"),
        .executableTarget(name: "FuzzSafetensorsHeader", dependencies: ["SafetensorsHeaderParser"]),
    ]
)
