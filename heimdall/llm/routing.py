"""Which provider, which key and which upstream model id serve a request.

Order of decisions (reference.md §7.2): the caller's model string picks a provider (``provider/model``
or a bare name/alias that some key serves), the virtual key's allow-lists are checked, a key is chosen
by weight among those that serve the model, and only then is the alias resolved on that key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from heimdall.errors import BadRequest, Forbidden
from heimdall.governance.virtual_keys import VirtualKeyRuntime
from heimdall.llm.catalog import KeyRuntime, ProviderRuntime

_RNG = random.Random()


@dataclass(slots=True)
class Route:
    provider: ProviderRuntime
    #: The model part of the caller's model string (an alias or a provider model id).
    model: str
    #: Keys to try, in order: a weighted random permutation of the eligible keys.
    keys: list[KeyRuntime]


def weighted_order(keys: list[KeyRuntime], rng: random.Random | None = None) -> list[KeyRuntime]:
    """Order keys by weighted sampling without replacement, so retries move to other keys."""
    if len(keys) <= 1:
        return keys
    rng = rng or _RNG
    # Efraimidis–Spirakis: sort by u^(1/w); zero-weight keys go last.
    scored = [(rng.random() ** (1.0 / key.weight) if key.weight > 0 else -1.0, key) for key in keys]
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [key for _, key in scored]


def _split(model: str, providers: dict[str, ProviderRuntime]) -> tuple[ProviderRuntime | None, str]:
    prefix, sep, rest = model.partition("/")
    if sep and rest and prefix in providers:
        return providers[prefix], rest
    return None, model


def route(
    model_field: str,
    providers: dict[str, ProviderRuntime],
    vk: VirtualKeyRuntime | None,
) -> Route:
    """Resolve the caller's ``model`` string to a provider and an ordered list of keys.

    Raises:
        BadRequest: no provider or key serves the model.
        Forbidden: the virtual key does not allow the provider, the model or any serving key.
    """
    provider, model = _split(model_field, providers)
    if provider is None:
        provider = _find_provider_for_bare_model(model_field, providers, vk)
    if vk is not None:
        rule = vk.providers.get(provider.name)
        if rule is None:
            raise Forbidden(f"virtual key {vk.name!r} is not allowed to use provider {provider.name!r}")
        if not rule.allowed_models.allows(model):
            raise Forbidden(f"virtual key {vk.name!r} is not allowed to use model {model!r} of {provider.name!r}")
    serving = [key for key in provider.keys if key.serves(model)]
    if not serving:
        raise BadRequest(
            f"no key of provider {provider.name!r} serves model {model!r}",
            error_type="model_not_found",
            code="model_not_found",
        )
    if vk is not None:
        serving = [key for key in serving if vk.allows_key(provider.name, key.id)]
        if not serving:
            raise Forbidden(f"virtual key {vk.name!r} may not use any key of {provider.name!r} that serves {model!r}")
    return Route(provider=provider, model=model, keys=weighted_order(serving))


def _find_provider_for_bare_model(
    model: str, providers: dict[str, ProviderRuntime], vk: VirtualKeyRuntime | None
) -> ProviderRuntime:
    """A bare name or alias: the first provider (in the virtual key's order, else config order) that
    the key allows and that has a key listing the name explicitly or as an alias."""
    order = [providers[name] for name in vk.provider_order if name in providers] if vk else list(providers.values())
    folded = model.casefold()
    for provider in order:
        if vk is not None and not vk.allows_model(provider.name, model):
            continue
        for key in provider.keys:
            if model in key.models.names or model in key.aliases or folded in key.aliases_folded:
                return provider
    prefix, sep, _ = model.partition("/")
    if sep and prefix and prefix not in providers:
        raise BadRequest(
            f"unknown provider {prefix!r} in model {model!r}; configured providers: {', '.join(providers) or 'none'}",
            error_type="invalid_request_error",
            code="unknown_provider",
            param="model",
        )
    raise BadRequest(
        f"no provider serves model {model!r}: address it as provider/model or configure an alias",
        error_type="model_not_found",
        code="model_not_found",
        param="model",
    )
