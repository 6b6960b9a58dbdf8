// Model subcommands: generate, logprobs, convert (a Hugging Face Qwen2 checkpoint folder).
//
// generate and logprobs follow the JSONL conventions of the text subcommands: they read JSON
// Lines (a file, or standard input) and write one line per non-blank input line to standard
// output, in order, keeping the input's fields and appending new ones. Every line is read and
// checked first (fields, token ids, the model's context length): the first bad line stops the
// program with "<source>:<line>: <what>" on standard error and exit code 1 before any work.
// Rows are then computed in batches of --batch-size and written batch by batch; a result that is
// not finite (NaN weights) stops the program naming its line, after the rows before it.
#include <grpo/core/error.hpp>
#include <grpo/model/lora.hpp>
#include <grpo/model/qwen2_checkpoint.hpp>
#include <grpo/model/qwen2_config.hpp>
#include <grpo/model/qwen2_generate.hpp>
#include <grpo/model/qwen2_policy.hpp>
#include <grpo/tokenizer/tokenizer.hpp>
#include <grpo/trainer/checkpoint.hpp>

#include <ATen/Context.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dtype_names.hpp"
#include "jsonl_rows.hpp"
#include "model_inputs.hpp"
#include "outputs.hpp"

namespace {

using lwz::NumberedRow;
using lwz::Row;
using lwz::string_field;
namespace fs = std::filesystem;

/// Where the model runs: --device cpu|cuda[:N], --dtype float32|bfloat16|auto, and
/// --tensor-parallel T (split over T ranks launched by torchrun; see lwz::join_tensor_group).
struct Placement {
  std::string device = "cpu";
  std::string dtype = "auto";
  std::int64_t tensor_parallel = 1;
  grpo::DeviceMesh mesh;  ///< the tensor group after join(); empty for one process

  /// Joins the tensor group (T > 1) or refuses a launcher (T = 1); before load_options().
  void join(const char* command, const std::string& input, const std::string& adapter = {}) {
    if (tensor_parallel > 1 && !adapter.empty())
      throw grpo::Error("--adapter: LoRA adapters are not supported with --tensor-parallel > 1; merge them first "
                        "(longwriter-zero convert --adapter)");
    c10::Device where = device.starts_with("cuda") ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
    mesh = lwz::join_tensor_group(command, tensor_parallel, where, input);
    if (where.is_cuda() && where.has_index()) device = where.str();
  }

  grpo::Qwen2LoadOptions load_options() const {
    grpo::Qwen2LoadOptions options;
    if (device == "cpu") {
      options.device = c10::kCPU;
    } else if (device.starts_with("cuda")) {
      if (!at::hasCUDA()) {
        throw grpo::Error("--device " + device + ": no CUDA device is available (or this build has no CUDA); use --device cpu");
      }
      options.device = c10::Device(device);
    } else {
      throw grpo::Error("--device: expected cpu or cuda[:N], found \"" + device + "\"");
    }
    if (dtype == "auto") {
      options.dtype = options.device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
    } else if (const auto named = grpo::find_enum(lwz::dtype_names, dtype)) {
      options.dtype = *named;
    } else {
      throw grpo::Error(fmt::format("--dtype: expected {} or auto, found \"{}\"", grpo::enum_choices(lwz::dtype_names), dtype));
    }
    options.tensor_parallel = mesh.tensor_parallel();
    return options;
  }

  void add_to(CLI::App* cmd, bool tensor_option = true) {
    cmd->add_option("--device", device, "cpu or cuda[:N]")->capture_default_str();
    cmd->add_option("--dtype", dtype, "float32, bfloat16, or auto (bfloat16 on a GPU, float32 on the CPU)")
        ->capture_default_str();
    if (tensor_option) {
      cmd->add_option("--tensor-parallel", tensor_parallel,
                      "split the model over T ranks: launch with torchrun --nproc_per_node T; rank 0 writes")
          ->capture_default_str();
    }
  }
};

/// End-of-sequence ids a checkpoint asks generation to stop at: generation_config.json's
/// eos_token_id when the folder has one (what transformers' generate() uses), else config.json's.
std::vector<std::int64_t> default_stop_ids(const fs::path& folder, const grpo::Qwen2Config& config) {
  std::ifstream file(folder / "generation_config.json", std::ios::binary);
  if (file) {
    const auto generation = grpo::io::read_json_file(folder / "generation_config.json", std::uintmax_t{16} << 20);
    const auto it = generation.find("eos_token_id");
    if (it != generation.end() && !it->is_null()) {
      std::vector<std::int64_t> ids;
      const auto add = [&](const nlohmann::json& id) {
        if (!id.is_number_integer()) {
          throw grpo::Error((folder / "generation_config.json").string() + ": eos_token_id: expected integers, found " +
                            grpo::io::quote_json(id));
        }
        ids.push_back(id.get<std::int64_t>());
      };
      if (it->is_array()) {
        for (const auto& id : *it) add(id);
      } else {
        add(*it);
      }
      return ids;
    }
  }
  return config.eos_token_ids;
}

void add_generate(CLI::App& app) {
  struct Options {
    std::string model;
    std::string adapter;
    std::string input;
    std::string prompt_field = "prompt";
    Placement placement;
    double temperature = 1.0;
    double top_p = 1.0;
    std::int64_t top_k = 0;
    std::int64_t max_new_tokens = 256;
    std::vector<std::string> stop;
    std::vector<std::int64_t> stop_token_ids;
    bool no_default_stop = false;
    bool greedy = false;
    std::uint64_t seed = 0;
    std::int64_t batch_size = 8;
    bool keep_special = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "generate",
      std::string("Samples a completion of each row's \"prompt\" (already templated text) with a Qwen2 model and adds "
                  "\"completion\" (text, cut after a stop string), \"completion_ids\" (sampled ids, a stop token "
                  "included), \"completion_logprobs\" (their log-probs under the sampling distribution) and "
                  "\"finish_reason\" (\"stop\" or \"length\"). Row i (0-based) samples with seed --seed + i, or with "
                  "its integer field \"seed\", so results do not depend on --batch-size.") +
          std::string(" ") + lwz::jsonl_contract);
  cmd->add_option("--model", o->model, "Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--adapter", o->adapter,
                  "PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) applied on top of --model");
  cmd->add_option("--input", o->input, "JSONL file, or - for standard input")->default_str("-");
  cmd->add_option("--prompt-field", o->prompt_field, "the string field holding the prompt")->capture_default_str();
  o->placement.add_to(cmd);
  cmd->add_option("--temperature", o->temperature, "softmax temperature (> 0)")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "nucleus sampling mass in (0, 1]; 1 = off")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "keep the k most likely tokens; 0 = off")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "most tokens per completion")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--stop", o->stop, "stop string, matched on the decoded text (repeatable), e.g. </answer>");
  cmd->add_option("--stop-token-id", o->stop_token_ids, "extra stop token id (repeatable)")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-default-stop", o->no_default_stop,
                "do not stop at the checkpoint's eos_token_id (generation_config.json, else config.json)");
  cmd->add_flag("--greedy", o->greedy, "argmax decoding (ignores temperature, top-p, top-k)");
  cmd->add_option("--seed", o->seed, "seed of row 0; row i uses seed + i")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "rows generated together")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_flag("--keep-special-tokens", o->keep_special, "keep special tokens in \"completion\"");
  cmd->callback([o] {
    const fs::path folder = o->model;
    lwz::check_model_folder(folder, "--model");
    if (!o->adapter.empty()) lwz::check_model_folder(o->adapter, "--adapter");
    o->placement.join("generate", o->input, o->adapter);
    auto policy = grpo::Qwen2Policy::load(folder, o->placement.load_options());
    if (!o->adapter.empty()) grpo::load_lora_adapter(*policy.model(), o->adapter);
    policy.model()->eval();
    grpo::SamplingOptions sampling{.temperature = o->temperature,
                                   .top_p = o->top_p,
                                   .top_k = o->top_k,
                                   .max_new_tokens = o->max_new_tokens,
                                   .stop_token_ids = o->stop_token_ids,
                                   .stop_strings = o->stop,
                                   .greedy = o->greedy,
                                   .skip_special_tokens = !o->keep_special};
    if (!o->no_default_stop) {
      for (auto id : default_stop_ids(folder, policy.model()->config())) sampling.stop_token_ids.push_back(id);
    }
    grpo::validate_sampling_options(sampling);
    // Every line is read and checked (fields, tokens, context length) before anything is generated.
    auto in = lwz::read_jsonl_input(o->input);
    const auto max_positions = policy.model()->config().max_position_embeddings;
    const auto config_file = (folder / "config.json").string();
    std::vector<std::vector<std::int64_t>> prompt_ids;
    std::vector<std::uint64_t> seeds;
    for (const auto& r : in.rows) {
      try {
        const auto& prompt = string_field(r.row, o->prompt_field);
        prompt_ids.push_back(policy.tokenizer().encode(prompt, policy.options().allow_special_in_prompts));
        if (prompt_ids.back().empty()) {
          throw grpo::Error(fmt::format("field \"{}\" is empty: the first new token needs a context", o->prompt_field));
        }
        lwz::check_context_length(static_cast<std::int64_t>(prompt_ids.back().size()), o->max_new_tokens, max_positions,
                                  "--max-new-tokens", config_file);
        const auto seed = r.row.find("seed");
        if (seed != r.row.end() && !seed->is_null()) {
          if (!seed->is_number_integer() || (!seed->is_number_unsigned() && seed->get<std::int64_t>() < 0)) {
            throw grpo::Error("field \"seed\" must be a non-negative integer, found " + grpo::io::quote_json(*seed));
          }
          seeds.push_back(seed->get<std::uint64_t>());
        } else {
          seeds.push_back(o->seed + r.index);
        }
      } catch (const grpo::Error& e) {
        throw grpo::Error(in.where(r) + e.what());
      }
    }
    const auto fill = [&](NumberedRow& r, const grpo::Generation& g) {
      r.row["completion"] = g.text;
      r.row["completion_ids"] = g.ids;
      r.row["completion_logprobs"] = g.logprobs;
      r.row["finish_reason"] = grpo::enum_name(grpo::finish_reason_names, g.finish_reason);
    };
    // Batches of --batch-size rows, each written once generated. A batch that fails (non-finite
    // logits) is redone row by row: the rows before the failing one are written, and the error
    // names its line.
    const auto rows = std::span(in.rows);
    for (std::size_t begin = 0; begin < rows.size(); begin += static_cast<std::size_t>(o->batch_size)) {
      const auto count = std::min(rows.size() - begin, static_cast<std::size_t>(o->batch_size));
      auto options = sampling;
      options.seeds.assign(seeds.begin() + static_cast<std::ptrdiff_t>(begin),
                           seeds.begin() + static_cast<std::ptrdiff_t>(begin + count));
      try {
        const auto generations = policy.generate_ids(std::span(prompt_ids).subspan(begin, count), options);
        for (std::size_t i = 0; i < count; ++i) fill(rows[begin + i], generations[i]);
      } catch (const grpo::Error& batch_error) {
        for (std::size_t i = begin; i < begin + count; ++i) {
          auto one = sampling;
          one.seeds = {seeds[i]};
          try {
            fill(rows[i], policy.generate_ids(std::span(prompt_ids).subspan(i, 1), one).front());
          } catch (const grpo::Error& e) {
            throw grpo::Error(in.where(rows[i]) + e.what());
          }
          lwz::write_jsonl_rows(rows.subspan(i, 1));
        }
        // No row fails alone (a batch-only numerical failure): name the batch.
        throw grpo::Error(fmt::format("{}:{}-{} (one batch of --batch-size rows): {}", in.source, rows[begin].line,
                                      rows[begin + count - 1].line, batch_error.what()));
      }
      lwz::write_jsonl_rows(rows.subspan(begin, count));
    }
  });
}

void add_logprobs(CLI::App& app) {
  struct Options {
    std::string model;
    std::string adapter;
    std::string input;
    Placement placement;
    double temperature = 1.0;
    std::int64_t batch_size = 8;
    std::int64_t chunk_size = 1024;
    bool entropy = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "logprobs",
      std::string("Scores each row's \"completion\" after its \"prompt\" with a Qwen2 model (teacher forcing) and "
                  "adds \"logprobs\": log p(token | everything before it) for each completion token, under "
                  "softmax(logits / --temperature). The prompt is tokenized with special tokens recognised; the "
                  "completion's ids are the row's \"completion_ids\" when present (as generate writes them), else "
                  "the tokenized \"completion\".") +
          std::string(" ") + lwz::jsonl_contract);
  cmd->add_option("--model", o->model, "Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--adapter", o->adapter,
                  "PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) applied on top of --model");
  cmd->add_option("--input", o->input, "JSONL file, or - for standard input")->default_str("-");
  o->placement.add_to(cmd);
  cmd->add_option("--temperature", o->temperature, "divides the logits before the softmax (> 0)")->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "rows scored together")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--chunk-size", o->chunk_size, "tokens per vocabulary chunk of the log-prob computation")->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--entropy", o->entropy, "also add \"entropy\": the entropy of each completion position");
  cmd->callback([o] {
    if (!(o->temperature > 0.0)) throw grpo::Error("--temperature: expected > 0, found " + std::to_string(o->temperature));
    lwz::check_model_folder(o->model, "--model");
    if (!o->adapter.empty()) lwz::check_model_folder(o->adapter, "--adapter");
    o->placement.join("logprobs", o->input, o->adapter);
    auto policy = grpo::Qwen2Policy::load(o->model, o->placement.load_options(),
                                          {.logprob_chunk_size = o->chunk_size, .compute_entropy = o->entropy});
    if (!o->adapter.empty()) grpo::load_lora_adapter(*policy.model(), o->adapter);
    policy.model()->eval();
    const auto& config = policy.model()->config();
    const auto vocab = config.vocab_size;
    const auto config_file = (fs::path(o->model) / "config.json").string();
    // Every line is read and checked (fields, token ids, context length) before anything is scored.
    auto in = lwz::read_jsonl_input(o->input);
    std::vector<std::vector<std::int64_t>> prompts, completions;
    for (const auto& r : in.rows) {
      try {
        prompts.push_back(policy.tokenizer().encode(string_field(r.row, "prompt"), true));
        if (prompts.back().empty()) throw grpo::Error("field \"prompt\" is empty; the first completion token needs a context");
        const auto ids = r.row.find("completion_ids");
        if (ids != r.row.end() && !ids->is_null()) {
          if (!ids->is_array()) throw grpo::Error("field \"completion_ids\" must be an array of token ids");
          std::vector<std::int64_t> completion;
          for (const auto& id : *ids) {
            if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= vocab) {
              throw grpo::Error("field \"completion_ids\": expected token ids in [0, " + std::to_string(vocab) +
                                "), found " + grpo::io::quote_json(id));
            }
            completion.push_back(id.get<std::int64_t>());
          }
          completions.push_back(std::move(completion));
        } else {
          completions.push_back(policy.tokenizer().encode(string_field(r.row, "completion"), true));
        }
        lwz::check_context_length(static_cast<std::int64_t>(prompts.back().size()),
                                  static_cast<std::int64_t>(completions.back().size()), config.max_position_embeddings,
                                  "the completion's tokens", config_file);
      } catch (const grpo::Error& e) {
        throw grpo::Error(in.where(r) + e.what());
      }
    }
    // Batches of --batch-size rows, each written once scored. A log-prob (or entropy) that is not
    // finite is an error naming its line, after the rows before it are written.
    const auto rows = std::span(in.rows);
    for (std::size_t begin = 0; begin < rows.size(); begin += static_cast<std::size_t>(o->batch_size)) {
      const auto count = std::min(rows.size() - begin, static_cast<std::size_t>(o->batch_size));
      const auto token_batch = grpo::make_token_batch(std::span(prompts).subspan(begin, count),
                                                      std::span(completions).subspan(begin, count));
      at::NoGradGuard no_grad;
      const auto result = policy.logprobs(token_batch, o->temperature);
      const auto logprobs = result.logprobs.to(at::kCPU).to(at::kDouble).contiguous();  // [count, L]
      const auto entropy = result.entropy.defined() ? result.entropy.to(at::kCPU).to(at::kDouble).contiguous() : at::Tensor();
      for (std::size_t i = 0; i < count; ++i) {
        auto& r = rows[begin + i];
        const auto row = static_cast<std::int64_t>(i);
        const auto start = static_cast<std::int64_t>(prompts[begin + i].size());
        const auto length = static_cast<std::int64_t>(completions[begin + i].size());
        const auto values = [&](const at::Tensor& t, const char* what) {
          const auto* first = t[row].data_ptr<double>() + start;
          std::vector<double> out(first, first + length);
          for (std::size_t k = 0; k < out.size(); ++k) {
            if (!std::isfinite(out[k])) {
              lwz::write_jsonl_rows(rows.subspan(begin, i));
              throw grpo::Error(fmt::format("{}{} of completion token {} is {} (not finite): the model's outputs are "
                                            "not finite; check the weights and the dtype (float16 overflows where "
                                            "bfloat16 does not)",
                                            in.where(r), what, k, out[k]));
            }
          }
          return out;
        };
        r.row["logprobs"] = values(logprobs, "the log-probability");
        if (entropy.defined()) r.row["entropy"] = values(entropy, "the entropy");
      }
      lwz::write_jsonl_rows(rows.subspan(begin, count));
    }
  });
}

void add_convert(CLI::App& app) {
  struct Options {
    std::string model;
    std::string checkpoint;
    std::string adapter;
    std::string out;
    std::string dtype = "float32";
    std::uint64_t max_shard_bytes = 5'000'000'000;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "convert",
      "Loads a Qwen2 checkpoint folder (causal LM or sequence classification) and writes it again with grpo's writer: "
      "another dtype, other shards; the tokenizer and generation files are copied. With --adapter, a PEFT LoRA "
      "adapter is merged into the weights (W + scaling B A) and kept beside them in adapter/. With --checkpoint, a "
      "sharded training checkpoint (trainer.checkpoint_layout; every rank's slices) is written whole, one tensor at "
      "a time, in its stored dtype. The result loads in transformers.");
  auto* model = cmd->add_option("--model", o->model, "Hugging Face checkpoint folder to read");
  auto* checkpoint = cmd->add_option(
      "--checkpoint", o->checkpoint,
      "sharded training checkpoint to read: a step-NNNNNN folder, or a run's output folder (its latest checkpoint)");
  model->excludes(checkpoint);
  checkpoint->excludes(model);
  cmd->add_option("--adapter", o->adapter, "PEFT LoRA adapter folder to merge into a causal LM");
  cmd->add_option("--out", o->out,
                  "folder to write (replaced atomically; it may hold only a checkpoint, and may not be or contain --model "
                  "or --adapter)")
      ->required();
  cmd->add_option("--dtype", o->dtype, "float32 or bfloat16")->capture_default_str();
  cmd->add_option("--max-shard-bytes", o->max_shard_bytes, "largest safetensors shard")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->callback([o, cmd] {
    if (o->model.empty() && o->checkpoint.empty()) throw grpo::Error("--model or --checkpoint is required");
    if (!o->checkpoint.empty()) {
      if (!o->adapter.empty()) throw grpo::Error("--adapter: applies to --model; a sharded checkpoint has no adapters");
      if (cmd->count("--dtype") > 0)
        throw grpo::Error("--dtype: a sharded checkpoint is written in its stored dtype; convert the result again "
                          "with --model for another");
      const auto folder = grpo::resolve_checkpoint(o->checkpoint);
      if (!grpo::is_sharded_checkpoint(folder)) {
        throw grpo::Error(fmt::format("--checkpoint {}: {} is a whole checkpoint (no shards/index.json); its policy/ "
                                      "folder is already a Hugging Face folder (convert --model {})",
                                      o->checkpoint, folder.string(), (folder / "policy").string()));
      }
      lwz::check_checkpoint_destination(o->out, {folder}, "--out");
      grpo::export_sharded_policy(folder / "shards", o->out, {.max_shard_bytes = o->max_shard_bytes});
      return;
    }
    // Before any work: the source is a readable checkpoint folder, and --out may be replaced as a
    // whole (not the source, nothing but a checkpoint of ours in it).
    lwz::check_model_folder(o->model, "--model");
    if (!o->adapter.empty()) lwz::check_model_folder(o->adapter, "--adapter");
    lwz::check_checkpoint_destination(o->out, {o->model, o->adapter}, "--out");
    Placement placement{.device = "cpu", .dtype = o->dtype};
    const auto load = placement.load_options();
    const grpo::Qwen2SaveOptions save{
        .max_shard_bytes = o->max_shard_bytes, .copy_files_from = o->model, .base_model = o->model};
    if (grpo::load_qwen2_config(o->model).architecture == grpo::Qwen2Architecture::sequence_classification) {
      if (!o->adapter.empty()) throw grpo::Error("--adapter: LoRA adapters apply to causal LMs; " + o->model + " is a reward model");
      auto model = grpo::load_qwen2_reward_model(o->model, load);
      grpo::save_qwen2_reward_model(model, o->out, save);
    } else {
      auto model = grpo::load_qwen2(o->model, load);
      if (!o->adapter.empty()) grpo::load_lora_adapter(*model, o->adapter);
      grpo::save_qwen2(model, o->out, save);
    }
  });
}

void add_model_commands(CLI::App& app) {
  add_generate(app);
  add_logprobs(app);
  add_convert(app);
}

const lwz::Registration registration{&add_model_commands};

}  // namespace
