#pragma once
// Names of enumerators, from one table written right after each enum that configs, command lines
// or output files spell out:
//
//   enum class LrDecay : std::uint8_t { constant, linear, cosine };
//   inline constexpr EnumName<LrDecay> lr_decay_names[] = {
//       {"constant", LrDecay::constant}, {"linear", LrDecay::linear}, {"cosine", LrDecay::cosine}};
//
//   parse_enum(lr_decay_names, "cosine", "lr_decay")  -> LrDecay::cosine
//   parse_enum(lr_decay_names, "cos", "lr_decay")     -> throws grpo::Error
//       lr_decay: expected one of constant, linear, cosine, found "cos"
//   enum_name(lr_decay_names, LrDecay::linear)        -> "linear"
//
// Parsing, printing and the list of choices in an error all read the same table, so a name is
// written once. Lookups are linear scans: tables hold a handful of names.

#include <fmt/format.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "grpo/core/error.hpp"

namespace grpo {

/// One row of a name table: the spelling and the enumerator it stands for. A table is a
/// constexpr array of these, in the order its choices are listed in messages.
template <class E>
struct EnumName {
  std::string_view name;  ///< the spelling in configs, command lines and output
  E value;                ///< the enumerator
};

namespace detail {

/// `<field>: expected one of <choices>, found "<found>"` (non-template: one copy for every enum).
[[noreturn]] inline void throw_unknown_enum_name(std::string_view field, std::string_view found, const std::string& choices) {
  throw Error(std::string(field) + ": expected one of " + choices + ", found \"" + std::string(found) + "\"");
}

}  // namespace detail

/// The enumerator spelt `name`, or std::nullopt when the table has no such name (exact,
/// case-sensitive match).
template <class E>
[[nodiscard]] constexpr std::optional<E> find_enum(std::span<const EnumName<E>> table, std::string_view name) noexcept {
  for (const auto& row : table)
    if (row.name == name) return row.value;
  return std::nullopt;
}

/// The table's names in order, comma-separated ("constant, linear, cosine"): the choices an
/// error message lists.
template <class E>
[[nodiscard]] std::string enum_choices(std::span<const EnumName<E>> table) {
  std::string out;
  for (const auto& row : table) out.append(out.empty() ? "" : ", ").append(row.name);
  return out;
}

/// The enumerator spelt `text`; throws grpo::Error naming `field` (the config key or flag the
/// text came from), the text and the accepted names.
template <class E>
[[nodiscard]] E parse_enum(std::span<const EnumName<E>> table, std::string_view text, std::string_view field) {
  if (const auto value = find_enum(table, text)) return *value;
  detail::throw_unknown_enum_name(field, text, enum_choices(table));
}

/// The name of `value`: the first row that holds it. Throws grpo::Error when the table has no row
/// for it (an enumerator added without a name).
template <class E>
[[nodiscard]] constexpr std::string_view enum_name(std::span<const EnumName<E>> table, E value) {
  for (const auto& row : table)
    if (row.value == value) return row.name;
  throw Error(fmt::format("enum_name: an enumerator has no name in its table (value {}); add a row for it next to the "
                          "enum",
                          static_cast<long long>(value)));
}

// The tables are C arrays, and a template argument is not deduced through the array -> span
// conversion: these overloads take the array itself and forward.

template <class E, std::size_t N>
[[nodiscard]] constexpr std::optional<E> find_enum(const EnumName<E> (&table)[N], std::string_view name) noexcept {
  return find_enum(std::span<const EnumName<E>>(table), name);
}

template <class E, std::size_t N>
[[nodiscard]] std::string enum_choices(const EnumName<E> (&table)[N]) {
  return enum_choices(std::span<const EnumName<E>>(table));
}

template <class E, std::size_t N>
[[nodiscard]] E parse_enum(const EnumName<E> (&table)[N], std::string_view text, std::string_view field) {
  return parse_enum(std::span<const EnumName<E>>(table), text, field);
}

template <class E, std::size_t N>
[[nodiscard]] constexpr std::string_view enum_name(const EnumName<E> (&table)[N], E value) {
  return enum_name(std::span<const EnumName<E>>(table), value);
}

}  // namespace grpo
