// The official `openai` npm client against the real gateway: `responses.create`,
// `responses.stream` (the SDK's stream helper builds the Response from the events and
// throws on a sequence it cannot follow), a function tool round trip and a chat
// completion, for each model given. Run by tests/integration/clients_test.cpp, which
// starts the gateway and the mock upstream and then compares each request's usage record
// with the usage this client saw.
//
// Env: TOLLGATE_BASE_URL (…/v1), TOLLGATE_KEY, TOLLGATE_MODELS and TOLLGATE_TRANSLATED
// (comma-separated; the latter: the models served through a translation).
// Prints one line per request: `SAW {"id":…,"input":…,"output":…}` (the x-request-id it
// sent and the usage the answer reported); exits 1 with `FAIL …` lines on any mismatch.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.TOLLGATE_BASE_URL,
  apiKey: process.env.TOLLGATE_KEY,
  maxRetries: 0,
  timeout: 20_000,
});
const models = (process.env.TOLLGATE_MODELS || '').split(',').filter(Boolean);
// The models served through a translation (their Response is built by the gateway).
const translated = new Set((process.env.TOLLGATE_TRANSLATED || '').split(',').filter(Boolean));

let failures = 0;
function check(ok, what, detail) {
  if (!ok) {
    failures++;
    console.log(`FAIL ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
  }
}
function saw(id, usage) {
  console.log('SAW ' + JSON.stringify({ id, input: usage?.input_tokens ?? usage?.prompt_tokens,
                                         output: usage?.output_tokens ?? usage?.completion_tokens }));
}
// The mock answers "word0 word1 … word{n-1} ".
const words = (n) => Array.from({ length: n }, (_, i) => `word${i} `).join('');
const opts = (id) => ({ headers: { 'x-request-id': id } });

async function create(model) {
  const id = `oai-create-${model}`;
  const r = await client.responses.create(
    { model, instructions: 'Answer briefly.', input: 'Hello from the openai client #mock chunks=12',
      max_output_tokens: 200 },
    opts(id));
  check(r.object === 'response', `${model} create: object`, r.object);
  check(r.status === 'completed', `${model} create: status`, r.status);
  check(r.output_text === words(12), `${model} create: output_text`, r.output_text);
  check(r.usage && r.usage.output_tokens === 12, `${model} create: usage`, r.usage);
  if (translated.has(model)) {
    // The translated Response echoes the request's settings, as the API does.
    check(r.instructions === 'Answer briefly.', `${model} create: instructions echoed`,
          r.instructions);
    check(r.max_output_tokens === 200, `${model} create: max_output_tokens echoed`,
          r.max_output_tokens);
  }
  saw(id, r.usage);
}

async function stream(model) {
  const id = `oai-stream-${model}`;
  const s = client.responses.stream(
    { model, input: 'Stream to the openai client #mock chunks=15', max_output_tokens: 200 },
    opts(id));
  const seqs = [];
  const types = [];
  let deltas = '';
  for await (const ev of s) {
    seqs.push(ev.sequence_number);
    types.push(ev.type);
    if (ev.type === 'response.output_text.delta') deltas += ev.delta;
  }
  const final = await s.finalResponse();
  check(seqs.every((n, i) => n === i), `${model} stream: sequence numbers 0, 1, 2, …`, seqs);
  check(types[0] === 'response.created', `${model} stream: first event`, types[0]);
  check(types[types.length - 1] === 'response.completed', `${model} stream: last event`,
        types[types.length - 1]);
  check(types.filter((t) => t === 'response.output_text.delta').length === 15,
        `${model} stream: 15 deltas`, types);
  check(deltas === words(15), `${model} stream: deltas add up`, deltas);
  check(final.output_text === words(15), `${model} stream: finalResponse().output_text`,
        final.output_text);
  check(final.status === 'completed', `${model} stream: status`, final.status);
  check(final.usage && final.usage.output_tokens === 15, `${model} stream: usage`, final.usage);
  saw(id, final.usage);
}

async function tools(model) {
  const tool = {
    type: 'function', name: 'get_weather', description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'],
                  additionalProperties: false },
    strict: true,
  };
  const id1 = `oai-tool-call-${model}`;
  const first = await client.responses.create(
    { model, input: [{ role: 'user', content: 'Weather in Paris? #mock chunks=4' }], tools: [tool] },
    opts(id1));
  const call = first.output.find((o) => o.type === 'function_call');
  check(call !== undefined, `${model} tools: a function_call item`, first.output);
  if (!call) return;
  check(call.name === 'get_weather', `${model} tools: name`, call.name);
  check(typeof call.call_id === 'string' && call.call_id.length > 0, `${model} tools: call_id`, call);
  let args = null;
  try { args = JSON.parse(call.arguments); } catch { /* checked below */ }
  check(args !== null && typeof args === 'object', `${model} tools: arguments are JSON`, call.arguments);
  saw(id1, first.usage);
  const id2 = `oai-tool-answer-${model}`;
  const second = await client.responses.create(
    { model, tools: [tool],
      input: [{ role: 'user', content: 'Weather in Paris? #mock chunks=4' }, ...first.output,
              { type: 'function_call_output', call_id: call.call_id, output: '{"celsius":21}' }] },
    opts(id2));
  check(second.output_text === words(4), `${model} tools: the answer after the output`,
        second.output_text);
  saw(id2, second.usage);
  // The call streamed: the SDK assembles the function_call item from the argument deltas.
  const id3 = `oai-tool-stream-${model}`;
  const s = client.responses.stream(
    { model, input: [{ role: 'user', content: 'Weather in Rome? #mock chunks=4' }], tools: [tool] },
    opts(id3));
  let argDeltas = '';
  for await (const ev of s) {
    if (ev.type === 'response.function_call_arguments.delta') argDeltas += ev.delta;
  }
  const streamed = await s.finalResponse();
  const scall = streamed.output.find((o) => o.type === 'function_call');
  check(scall !== undefined && scall.name === 'get_weather', `${model} tools streamed: the call`,
        streamed.output);
  check(scall !== undefined && scall.arguments === argDeltas,
        `${model} tools streamed: argument deltas add up`, { argDeltas, call: scall });
  saw(id3, streamed.usage);
}

async function chat(model) {
  const id = `oai-chat-${model}`;
  const s = await client.chat.completions.create(
    { model, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Chat with the openai client #mock chunks=6' }] },
    opts(id));
  let text = '';
  let usage = null;
  for await (const chunk of s) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === words(6), `${model} chat: streamed text`, text);
  check(usage && usage.completion_tokens === 6, `${model} chat: usage`, usage);
  saw(id, usage);
}

check(models.length > 0, 'TOLLGATE_MODELS names no model');
for (const model of models) {
  for (const step of [create, stream, tools, chat]) {
    try {
      await step(model);
    } catch (e) {
      check(false, `${model} ${step.name}: threw`, String(e && (e.stack || e)));
    }
  }
}
console.log(failures === 0 ? 'OK' : `${failures} failure(s)`);
process.exitCode = failures === 0 ? 0 : 1;
