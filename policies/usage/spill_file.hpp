#pragma once
// spill_file: usage records a shutdown could not make durable (the ledger's database
// unreachable), kept in a file beside the ledger and applied at the next start before the
// gateway serves (SPEC "Shutdown with the ledger unreachable").
//
// Exactly once: records travel in batches, each with the id the ledger gave it (a batch
// that was being written when the gateway stopped keeps its id). Every ledger transaction
// stores its batch id in the same transaction, so a batch already in the database (its
// commit went through after all) is recognised and skipped, whether the replay runs once
// or is interrupted and runs again.
//
// Format: JSON lines, for operators to read. A batch is a line {"batch":ID,"records":N}
// followed by its N records, one JSON object a line with every stored field. Written with
// O_APPEND and fsync; a batch cut short by a crash while spilling is reported, its whole
// records kept.

#include <cstdint>
#include <string>
#include <vector>

#include "store/usage_record.hpp"

namespace tollgate::policies {

struct spill_batch {
    std::int64_t id = 0;
    std::vector<store::usage_record> records;
};

// Appends the batches to `path` (created 0600 with its parent directories) and fsyncs the
// file and its directory. Throws std::runtime_error naming the path and the cause.
void write_spill(const std::string& path, const std::vector<spill_batch>& batches);

// Reads every batch of `path`. A line that is not JSON, or a batch cut short, is skipped
// with `problems` saying where; the records that parse are kept. Throws
// std::runtime_error when the file cannot be read.
std::vector<spill_batch> read_spill(const std::string& path, std::vector<std::string>& problems);

// One record as a spill line (no newline); read_spill() reads it back field for field.
void append_spill_record(std::string& out, const store::usage_record& r);

}  // namespace tollgate::policies
