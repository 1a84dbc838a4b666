"""Chat completions from an OpenAI-compatible API, Anthropic's Messages API
or Ollama, behind one interface (`LLMClient.complete`), as OpenSOAR's.

Endpoint and key: the arguments, else the Playbook's Secret named like the
provider: `openai` (`api_key`, `base_url`, default https://api.openai.com;
any OpenAI-compatible server), `anthropic` (`api_key`, `base_url`), `ollama`
(`url` or `base_url`, default http://localhost:11434). Answers are never
cached; the rate limit defaults to 60 requests a minute per provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from kubesoar.integrations._base import Integration
from kubesoar.integrations._errors import IntegrationError

__all__ = ["LLMClient", "LLMResponse"]

LLM_TIMEOUT_SECONDS: Final = 120.0


@dataclass
class LLMResponse:
    content: str
    model: str
    usage: dict[str, Any] = field(default_factory=dict)


class _Provider(Integration):
    requests_per_minute: ClassVar[float | None] = 60

    async def chat(
        self, model: str, prompt: str, system: str, max_tokens: int, temperature: float
    ) -> LLMResponse:
        raise NotImplementedError

    def _answer(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise IntegrationError(f"{self.display_name} answered something that is not JSON")
        return answer


class _OpenAI(_Provider):
    name: ClassVar[str] = "openai"
    display_name: ClassVar[str] = "OpenAI"
    default_base_url: ClassVar[str] = "https://api.openai.com"

    async def chat(
        self, model: str, prompt: str, system: str, max_tokens: int, temperature: float
    ) -> LLMResponse:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        answer = self._answer(
            await self._request(
                "llm.openai",
                "POST",
                "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                },
                headers={"Authorization": f"Bearer {self.require('api_key')}"},
                request_timeout=LLM_TIMEOUT_SECONDS,
                raise_errors=True,
            )
        )
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise IntegrationError("OpenAI answer has no choices[0].message.content") from None
        return LLMResponse(str(content), answer.get("model", model), answer.get("usage", {}))


class _Anthropic(_Provider):
    name: ClassVar[str] = "anthropic"
    display_name: ClassVar[str] = "Anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"

    async def chat(
        self, model: str, prompt: str, system: str, max_tokens: int, temperature: float
    ) -> LLMResponse:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "messages": [{"role": "user", "content": prompt}],
        }
        if system:
            body["system"] = system
        answer = self._answer(
            await self._request(
                "llm.anthropic",
                "POST",
                "/v1/messages",
                json=body,
                headers={"x-api-key": self.require("api_key"), "anthropic-version": "2023-06-01"},
                request_timeout=LLM_TIMEOUT_SECONDS,
                raise_errors=True,
            )
        )
        try:
            content = answer["content"][0]["text"]
        except (KeyError, IndexError, TypeError):
            raise IntegrationError("Anthropic answer has no content[0].text") from None
        return LLMResponse(str(content), answer.get("model", model), answer.get("usage", {}))


class _Ollama(_Provider):
    name: ClassVar[str] = "ollama"
    display_name: ClassVar[str] = "Ollama"
    default_base_url: ClassVar[str] = "http://localhost:11434"
    credential_keys: ClassVar[tuple[str, ...]] = ()

    @property
    def base_url(self) -> str:
        return (self.setting("base_url") or self.setting("url") or self.default_base_url).rstrip(
            "/"
        )

    async def chat(
        self, model: str, prompt: str, system: str, max_tokens: int, temperature: float
    ) -> LLMResponse:
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "stream": False,
            "options": {"temperature": temperature, "num_predict": max_tokens},
        }
        if system:
            body["system"] = system
        answer = self._answer(
            await self._request(
                "llm.ollama",
                "POST",
                "/api/generate",
                json=body,
                request_timeout=LLM_TIMEOUT_SECONDS,
                raise_errors=True,
            )
        )
        return LLMResponse(
            str(answer.get("response", "")),
            answer.get("model", model),
            {
                "prompt_tokens": answer.get("prompt_eval_count", 0),
                "completion_tokens": answer.get("eval_count", 0),
            },
        )


_PROVIDERS: Final[dict[str, type[_Provider]]] = {
    "openai": _OpenAI,
    "anthropic": _Anthropic,
    "ollama": _Ollama,
}


class LLMClient:
    """`LLMClient(provider, model, api_key="", base_url="")`, as OpenSOAR's."""

    def __init__(self, provider: str, model: str, api_key: str = "", base_url: str = "") -> None:
        self.provider = provider
        self.model = model
        self.api_key = api_key
        self.base_url = base_url

    async def complete(
        self,
        prompt: str,
        *,
        system: str = "",
        max_tokens: int = 1024,
        temperature: float = 0.3,
    ) -> LLMResponse:
        kind = _PROVIDERS.get(self.provider)
        if kind is None:
            raise ValueError(f"Unknown LLM provider: {self.provider}")
        provider = kind({"api_key": self.api_key, "base_url": self.base_url})
        try:
            return await provider.chat(self.model, prompt, system, max_tokens, temperature)
        finally:
            await provider.disconnect()

    def __repr__(self) -> str:  # never the key
        return f"LLMClient(provider={self.provider!r}, model={self.model!r})"
