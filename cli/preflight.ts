/**
 * The endpoint preflight: before any sandbox or job, one `GET /v1/models` per `--model-url`
 * (OpenAI's "List models" endpoint, which vLLM, SGLang and CWM's server answer) with a short
 * timeout. A server that does not answer, answers an HTTP error, or answers something that is not
 * an OpenAI model list is refused in one line naming the URL and what failed (exit 2,
 * cli/exit-codes.ts) — so a wrong URL is found in a second and never counted as the model's failure.
 */
import { request } from "undici";
import { UsageError } from "./exit-codes";

/** What one endpoint answered: the model ids it lists. */
export interface PreflightResult {
  url: string;
  models: string[];
}

/** `http://h:p/v1/` or `http://h:p` → `http://h:p/v1/models` (the client's own normalisation: no trailing `/` nor `/v1`). */
export function modelsUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`--model-url ${raw}: not a URL (expected http://HOST:PORT of an OpenAI-compatible server)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UsageError(`--model-url ${raw}: not an http(s) URL`);
  let p = u.pathname.replace(/\/+$/, "");
  if (p.endsWith("/v1")) p = p.slice(0, -3);
  return `${u.origin}${p}/v1/models`;
}

/**
 * Check every endpoint once (in parallel). `model`, when given, must be among the listed ids of at
 * be listed by each endpoint that lists any (a server that lists none is taken at its word).
 * @param timeoutMs per request (default 5000).
 * @throws UsageError naming the first endpoint that failed and how.
 */
export async function preflightEndpoints(urls: readonly string[], opts: { apiKey?: string; model?: string; timeoutMs?: number } = {}): Promise<PreflightResult[]> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  return Promise.all(
    urls.map(async (raw): Promise<PreflightResult> => {
      const target = modelsUrl(raw);
      let status: number;
      let text: string;
      try {
        const res = await request(target, {
          method: "GET",
          headers: opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {},
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          signal: AbortSignal.timeout(timeoutMs),
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        const e = err as Error & { code?: string; cause?: { code?: string } };
        const why = e.name === "TimeoutError" || e.name === "AbortError" || /timeout/i.test(e.code ?? "") ? `no answer within ${timeoutMs / 1000} s` : (e.code ?? e.cause?.code ?? e.message);
        throw new UsageError(`--model-url ${raw}: unreachable (GET ${target}: ${why}); start the server or fix the URL`);
      }
      if (status === 401 || status === 403) throw new UsageError(`--model-url ${raw}: GET ${target} answered ${status}: give the key with --api-key (or FORAGER_API_KEY)`);
      if (status < 200 || status >= 300) throw new UsageError(`--model-url ${raw}: GET ${target} answered HTTP ${status}; not an OpenAI-compatible server?`);
      let ids: string[];
      try {
        const body = JSON.parse(text) as { data?: Array<{ id?: unknown }> };
        if (!Array.isArray(body.data)) throw new Error("no data list");
        ids = body.data.map((m) => (typeof m.id === "string" ? m.id : "")).filter(Boolean);
      } catch {
        throw new UsageError(`--model-url ${raw}: GET ${target} did not answer an OpenAI model list ({"data": [{"id": …}]}); not an OpenAI-compatible server?`);
      }
      if (opts.model && ids.length && !ids.includes(opts.model)) {
        throw new UsageError(`--model ${opts.model}: not served by ${raw} (it serves: ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", …" : ""})`);
      }
      return { url: raw, models: ids };
    }),
  );
}
