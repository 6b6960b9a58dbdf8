#pragma once
// safetensors checkpoints in and out, the Hugging Face way:
//   grpo/io/safetensors_reader.hpp  SafetensorsFile (one mapped file), SafetensorsCheckpoint (a file,
//                                   or a folder with model.safetensors or an index of shards)
//   grpo/io/safetensors_writer.hpp  save_safetensors (one file, byte-identical to the reference),
//                                   save_sharded_safetensors (shards + index, like save_pretrained)

#include "grpo/io/safetensors_reader.hpp"
#include "grpo/io/safetensors_writer.hpp"
