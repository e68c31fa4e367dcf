import GantryCore
import GantryServing
import Testing

/// The command lines Gantry starts each engine with. vLLM, SGLang and TGI are not installed on
/// the test machine, so their commands are checked here flag by flag against their documented
/// options; llama.cpp's runs for real in the end-to-end tests.
@Suite("Engine adapters")
struct EngineAdapterTests {
    let gpuSpec = EngineLaunchSpec(
        instanceID: "ins_1", deploymentName: "chat", engine: "x", modelPath: "/models/m", contextLimit: 4096,
        extraArguments: ["--extra", "1"], gpuUUIDs: ["GPU-a", "GPU-b"], cpuThreads: 3)
    let cpuSpec = EngineLaunchSpec(
        instanceID: "ins_2", deploymentName: "chat", engine: "x", modelPath: "/models/m.gguf", contextLimit: 512,
        cpuThreads: 2)

    /// The value after `flag`, or nil.
    func value(_ flag: String, in arguments: [String]) -> String? {
        guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }

    @Test("llama.cpp: model, port, context, threads, alias; all layers on the GPUs it holds, none on CPU instances")
    func llamaCpp() {
        let adapter = LlamaCppAdapter(binary: "/opt/llama-server")
        let gpu = adapter.command(for: gpuSpec, host: "127.0.0.1", port: 4000)
        #expect(gpu.arguments.first == "/opt/llama-server")
        #expect(value("--model", in: gpu.arguments) == "/models/m")
        #expect(value("--port", in: gpu.arguments) == "4000")
        #expect(value("--host", in: gpu.arguments) == "127.0.0.1")
        #expect(value("--ctx-size", in: gpu.arguments) == "4096")
        #expect(value("--threads", in: gpu.arguments) == "3")
        #expect(value("--alias", in: gpu.arguments) == "chat")
        #expect(value("--n-gpu-layers", in: gpu.arguments) == "999")
        #expect(gpu.environment["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b")
        #expect(Array(gpu.arguments.suffix(2)) == ["--extra", "1"], "the revision's arguments come last")
        let cpu = adapter.command(for: cpuSpec, host: "127.0.0.1", port: 4001)
        #expect(!cpu.arguments.contains("--n-gpu-layers"))
        #expect(cpu.environment["CUDA_VISIBLE_DEVICES"] == "", "a CPU instance sees no GPU at all")
        #expect(adapter.healthPath == "/health" && adapter.metricsPath == "/metrics")
    }

    @Test("vLLM: `vllm serve` with the served name, context length and one tensor-parallel rank per GPU")
    func vllm() {
        let command = VLLMAdapter(program: "vllm").command(for: gpuSpec, host: "127.0.0.1", port: 4000)
        #expect(Array(command.arguments.prefix(3)) == ["vllm", "serve", "/models/m"])
        #expect(value("--served-model-name", in: command.arguments) == "chat")
        #expect(value("--max-model-len", in: command.arguments) == "4096")
        #expect(value("--tensor-parallel-size", in: command.arguments) == "2")
        #expect(value("--port", in: command.arguments) == "4000")
        #expect(command.environment["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b")
        #expect(Array(command.arguments.suffix(2)) == ["--extra", "1"])
    }

    @Test("SGLang: `python -m sglang.launch_server` with model path, served name, context length and tp size")
    func sglang() {
        let command = SGLangAdapter(python: "/venv/bin/python").command(for: gpuSpec, host: "127.0.0.1", port: 4000)
        #expect(Array(command.arguments.prefix(3)) == ["/venv/bin/python", "-m", "sglang.launch_server"])
        #expect(value("--model-path", in: command.arguments) == "/models/m")
        #expect(value("--served-model-name", in: command.arguments) == "chat")
        #expect(value("--context-length", in: command.arguments) == "4096")
        #expect(value("--tp-size", in: command.arguments) == "2")
        #expect(value("--host", in: command.arguments) == "127.0.0.1")
    }

    @Test("TGI: the launcher with model id, hostname, token limits and one shard per GPU")
    func tgi() {
        let adapter = TGIAdapter(program: "text-generation-launcher")
        let command = adapter.command(for: gpuSpec, host: "127.0.0.1", port: 4000)
        #expect(command.arguments.first == "text-generation-launcher")
        #expect(value("--model-id", in: command.arguments) == "/models/m")
        #expect(value("--hostname", in: command.arguments) == "127.0.0.1")
        #expect(value("--max-total-tokens", in: command.arguments) == "4096")
        #expect(value("--max-input-tokens", in: command.arguments) == "4095")
        #expect(value("--num-shard", in: command.arguments) == "2")
        #expect(!adapter.command(for: cpuSpec, host: "h", port: 1).arguments.contains("--num-shard"))
    }

    @Test("custom: the operator's template with every placeholder filled, one argument per word")
    func custom() {
        let adapter = CustomCommandAdapter(
            template:
                "my-server --weights {model} --listen {host}:{port} --ctx {context} --name {name} -t {threads} --gpus {gpus} --n {gpu_count}"
        )
        let command = adapter.command(for: gpuSpec, host: "127.0.0.1", port: 4000)
        #expect(
            command.arguments == [
                "my-server", "--weights", "/models/m", "--listen", "127.0.0.1:4000", "--ctx", "4096", "--name", "chat", "-t", "3",
                "--gpus", "GPU-a,GPU-b", "--n", "2", "--extra", "1",
            ])
        #expect(command.environment["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b")
    }

    @Test("engines whose program is missing are not offered; llama.cpp always is")
    func availability() async {
        #expect(await !VLLMAdapter(program: "/nonexistent/vllm").isInstalled())
        #expect(await !TGIAdapter(program: "no-such-launcher-here").isInstalled())
        #expect(await !SGLangAdapter(python: "/nonexistent/python").isInstalled())
        #expect(await CustomCommandAdapter(template: "/bin/sh -c true").isInstalled())
    }
}
