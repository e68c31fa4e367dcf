// swift-tools-version: 6.2
import PackageDescription

/// One set of compiler settings for every target, so that all modules are held to the same rules.
let sharedSwiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let httpTypes = Target.Dependency.product(name: "HTTPTypes", package: "swift-http-types")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let httpClient = Target.Dependency.product(name: "AsyncHTTPClient", package: "async-http-client")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")

let package = Package(
    name: "gantry",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gantry", targets: ["Gantry"]),
        // A fake OpenAI engine for bench/gateway.sh: canned answers, no model.
        .executable(name: "gantry-fake-engine", targets: ["GantryFakeEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Already in the graph through Hummingbird; named for NIOHTTPTypes (the direct relay's parts).
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/vapor/sql-kit", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-kit", from: "2.17.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        // Kubeconfig files are YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Tests only: property-based, differential tests of the hand-written HTTP code against NIO's.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        .executableTarget(
            name: "Gantry",
            dependencies: ["GantryCommands", "CSystemTuning", logging],
            swiftSettings: sharedSwiftSettings
        ),
        .target(name: "GantryCore", swiftSettings: sharedSwiftSettings),
        .executableTarget(
            name: "GantryFakeEngine",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        // NVML through dlopen: C, so that no NVIDIA header or library is needed to build.
        .target(name: "CNVML"),
        // glibc's malloc tuning, for the executable only.
        .target(name: "CSystemTuning"),
        .target(
            name: "GantryStore",
            dependencies: [
                "GantryCore", logging,
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "GantryBlobs",
            dependencies: [
                "GantryCore", crypto, httpClient, logging,
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        // A small typed client for the Kubernetes API (pods, nodes, events, logs): shared by the
        // Kubernetes runtime (GantryServing) and node source (GantryResources).
        .target(
            name: "GantryKubernetes",
            dependencies: [
                "GantryCore", httpClient, logging, serviceLifecycle,
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "GantryHTTP",
            dependencies: [
                "GantryCore", hummingbird, httpTypes, logging,
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "GantryRegistry", dependencies: ["GantryCore", "GantryBlobs", "GantryHTTP", hummingbird, logging, crypto],
            swiftSettings: sharedSwiftSettings),
        .target(
            name: "GantryServing",
            dependencies: [
                "GantryCore", "GantryHTTP", "GantryKubernetes", hummingbird, httpTypes, httpClient, logging, serviceLifecycle,
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "GantryResources",
            dependencies: [
                "CNVML", "GantryCore", "GantryHTTP", "GantryKubernetes", hummingbird, httpClient, logging, serviceLifecycle,
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: sharedSwiftSettings),
        .target(
            name: "GantryGateway",
            dependencies: [
                "GantryCore", "GantryHTTP", hummingbird, httpTypes, httpClient, logging, crypto, serviceLifecycle,
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
            ],
            swiftSettings: sharedSwiftSettings),
        .target(
            name: "GantryOrchestrator",
            dependencies: ["GantryCore", "GantryHTTP", hummingbird, logging, serviceLifecycle],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "GantryAuth",
            dependencies: [
                "GantryCore", "GantryHTTP", hummingbird, httpTypes, logging, crypto, httpClient,
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: sharedSwiftSettings),
        .target(
            name: "GantryConsole",
            dependencies: ["GantryCore", "GantryHTTP", hummingbird, httpTypes],
            resources: [.embedInCode("Resources/console.css"), .embedInCode("Resources/console.js")],
            swiftSettings: sharedSwiftSettings),
        .target(
            name: "GantryCommands",
            dependencies: [
                "GantryCore", "GantryStore", "GantryBlobs", "GantryHTTP", "GantryRegistry", "GantryServing",
                "GantryResources", "GantryGateway", "GantryOrchestrator", "GantryAuth", "GantryKubernetes", "GantryConsole",
                hummingbird, httpClient, logging, serviceLifecycle, crypto,
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The OpenAPI document, compiled into the binary (a static `gantry` carries no
            // resource bundle beside it).
            resources: [.embedInCode("Resources/openapi.json")],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "GantryTestSupport",
            dependencies: [
                "GantryCore", "GantryStore", hummingbird, httpTypes, logging, serviceLifecycle, httpClient, crypto,
                .product(name: "SQLKit", package: "sql-kit"), .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        // Fast unit tests, one target per module: no server, database or peer
        // (`swift test --filter 'Gantry(Gateway|Serving|Core|Auth|Commands|Orchestrator)Tests'` runs them in seconds).
        .testTarget(
            name: "GantryGatewayTests",
            dependencies: [
                "GantryGateway", "GantryCore", httpClient,
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "GantryServingTests", dependencies: ["GantryServing", "GantryCore"], swiftSettings: sharedSwiftSettings),
        .testTarget(name: "GantryCoreTests", dependencies: ["GantryCore"], swiftSettings: sharedSwiftSettings),
        .testTarget(name: "GantryAuthTests", dependencies: ["GantryAuth", "GantryCore"], swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "GantryOrchestratorTests", dependencies: ["GantryOrchestrator", "GantryCore"],
            swiftSettings: sharedSwiftSettings),
        .testTarget(
            name: "GantryCommandsTests", dependencies: ["GantryCommands", "GantryCore"], swiftSettings: sharedSwiftSettings),
        // Tests against live servers and the real peers (PostgreSQL, moto, nanoidp, llama.cpp, the
        // Kubernetes control plane), started by scripts/test.sh.
        .testTarget(
            name: "GantryIntegrationTests",
            dependencies: [
                "GantryCommands", "GantryTestSupport", "GantryStore", "GantryCore", "GantryAuth", "GantryServing",
                "GantryHTTP", "GantryGateway", "GantryOrchestrator", "GantryRegistry", "GantryBlobs", "GantryKubernetes",
                "GantryResources", "GantryConsole", hummingbird, httpClient, crypto, serviceLifecycle,
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
