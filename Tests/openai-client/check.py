"""The official `openai` Python client against a running Gantry (started by OpenAIClientTests).

Environment: GANTRY_BASE_URL, GANTRY_KEY (a user key), GANTRY_LIMITED_KEY (a key allowed one
request per minute), GANTRY_CHAT_MODEL, GANTRY_EMBED_MODEL, GANTRY_CONTEXT_LIMIT.
Prints one line per check and exits non-zero at the first failure.
"""
import os
import sys

import openai

# OpenAIClientTests compares this with the pin in scripts/peers/test.txt.
print(f"openai client {openai.__version__}", flush=True)
base = os.environ["GANTRY_BASE_URL"] + "/v1"
chat_model = os.environ["GANTRY_CHAT_MODEL"]
embed_model = os.environ["GANTRY_EMBED_MODEL"]
context_limit = int(os.environ["GANTRY_CONTEXT_LIMIT"])
# No retries: a 429 must surface as RateLimitError, not be retried away.
client = openai.OpenAI(base_url=base, api_key=os.environ["GANTRY_KEY"], max_retries=0, timeout=120)
checks = 0


def check(name, condition, detail=""):
    global checks
    if not condition:
        print(f"FAIL {name} {detail}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok {name}", flush=True)


def expect_error(name, cls, code, call):
    try:
        call()
    except cls as error:
        body = error.body if isinstance(error.body, dict) else {}
        check(name, code is None or body.get("code") == code, f"code {body.get('code')!r}, expected {code!r}")
        return error
    except Exception as error:  # noqa: BLE001 - any other class is the failure being tested for
        check(name, False, f"raised {type(error).__name__}: {error}")
    check(name, False, "no error raised")


models = [m.id for m in client.models.list().data]
check("models.list lists the chat model", chat_model in models, str(models))
check("models.retrieve finds it", client.models.retrieve(chat_model).id == chat_model)

chat = client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
check("chat completion has text", bool(chat.choices[0].message.content), repr(chat))
check("chat completion has usage", chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0, repr(chat.usage))

raw = client.chat.completions.with_raw_response.create(
    model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
check("every response carries a request id", bool(raw.headers.get("x-request-id")), str(dict(raw.headers)))

text, usage_chunks = "", 0
for chunk in client.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, stream=True):
    if chunk.usage is not None:
        usage_chunks += 1
    for choice in chunk.choices:
        text += choice.delta.content or ""
check("stream delivers text", len(text) > 0, repr(text))
check("stream without include_usage has no usage chunk", usage_chunks == 0, str(usage_chunks))

final_usage = None
for chunk in client.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, stream=True,
        stream_options={"include_usage": True}):
    if chunk.usage is not None:
        final_usage = chunk.usage
check("stream with include_usage ends with usage", final_usage is not None and final_usage.completion_tokens > 0,
      repr(final_usage))

completion = client.completions.create(model=chat_model, prompt="Once upon a time", max_tokens=6)
check("completion has text", len(completion.choices[0].text) > 0, repr(completion))

embedding = client.embeddings.create(model=embed_model, input=["hello world", "goodbye"])
check("embeddings: one vector per input", len(embedding.data) == 2 and len(embedding.data[0].embedding) > 16,
      repr(embedding)[:200])

expect_error("max_tokens over the context limit is BadRequestError", openai.BadRequestError, "context_length_exceeded",
             lambda: client.chat.completions.create(
                 model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=context_limit + 1))
# A prompt longer than the context, counted with the engine's tokenizer before the engine runs it.
long_prompt = "hello " * (context_limit + 50)
expect_error("a prompt over the context limit is BadRequestError", openai.BadRequestError, "context_length_exceeded",
             lambda: client.chat.completions.create(
                 model=chat_model, messages=[{"role": "user", "content": long_prompt}], max_tokens=8))
expect_error("a prompt that fits only without its max_tokens is refused", openai.BadRequestError,
             "context_length_exceeded",
             lambda: client.completions.create(
                 model=chat_model, prompt="hello " * (context_limit - 40), max_tokens=100))
expect_error("a bad n is BadRequestError", openai.BadRequestError, None,
             lambda: client.chat.completions.create(
                 model=chat_model, messages=[{"role": "user", "content": "Hi"}], n=1000))
expect_error("an unknown model is NotFoundError", openai.NotFoundError, "model_not_found",
             lambda: client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}]))
expect_error("retrieving an unknown model is NotFoundError", openai.NotFoundError, "model_not_found",
             lambda: client.models.retrieve("no-such-model"))
bad_key = openai.OpenAI(base_url=base, api_key="gk_aaaaaaaaaaaa_" + "b" * 43, max_retries=0)
expect_error("a wrong key is AuthenticationError", openai.AuthenticationError, "invalid_api_key",
             lambda: bad_key.models.list())

limited = openai.OpenAI(base_url=base, api_key=os.environ["GANTRY_LIMITED_KEY"], max_retries=0)
limited.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
error = expect_error("the second request of a 1-per-minute key is RateLimitError", openai.RateLimitError,
                     "rate_limit_exceeded",
                     lambda: limited.chat.completions.create(
                         model=chat_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2))
check("429 carries retry-after and x-ratelimit headers",
      int(error.response.headers.get("retry-after", "0")) >= 1
      and error.response.headers.get("x-ratelimit-limit-requests") == "1"
      and error.response.headers.get("x-ratelimit-remaining-requests") == "0",
      str(dict(error.response.headers)))

print(f"all {checks} checks passed", flush=True)
