// The PEGTL grammar of the .mesh language: one struct per rule, named after
// what the user sees. Included by parse.cpp only (PEGTL is heavy).
//
// Layout rules: an item or statement ends at a newline, at `;`, or just before
// `}`; a newline may follow `->` and `{`. `_` skips blanks and comments within
// a line, `__` also skips newlines.
#pragma once

#include <string_view>

#include <tao/pegtl.hpp>
#include <tao/pegtl/contrib/analyze_traits.hpp>

namespace meshrun::dsl::grammar {

using namespace tao::pegtl;

// clang-format off

// ---- lexical -------------------------------------------------------------

struct comment : seq<one<'#'>, star<not_one<'\n'>>> {};
struct blank : sor<one<' ', '\t', '\r'>, comment> {};
struct _ : star<blank> {};
struct __ : star<sor<blank, one<'\n'>>> {};

struct name_char : identifier_other {};
// A keyword ends where a name could not go on (`send-x` is a name, not `send`).
struct word_end : not_at<sor<name_char, seq<one<'-'>, name_char>>> {};
template<typename Str> struct kw : seq<Str, word_end> {};
// `R` where `Peek` is next: tries R (and makes its parse-tree node) only when it can match.
template<typename Peek, typename R> struct peek : seq<at<Peek>, R> {};

#define MESHRUN_KW(id, text) struct kw_##id : kw<TAO_PEGTL_STRING(text)> {};
MESHRUN_KW(mesh, "mesh") MESHRUN_KW(include, "include") MESHRUN_KW(secret, "secret")
MESHRUN_KW(discovery, "discovery") MESHRUN_KW(node, "node") MESHRUN_KW(test, "test")
MESHRUN_KW(pin, "pin") MESHRUN_KW(action, "action") MESHRUN_KW(every, "every") MESHRUN_KW(on, "on")
MESHRUN_KW(toggle, "toggle") MESHRUN_KW(send, "send") MESHRUN_KW(ack, "ack") MESHRUN_KW(log, "log")
MESHRUN_KW(after, "after") MESHRUN_KW(repeat, "repeat") MESHRUN_KW(value, "value") MESHRUN_KW(tick, "tick")
MESHRUN_KW(random, "random") MESHRUN_KW(not, "not") MESHRUN_KW(and, "and") MESHRUN_KW(or, "or")
// Keywords only where they stand:
MESHRUN_KW(env, "env") MESHRUN_KW(etcd, "etcd") MESHRUN_KW(at, "at") MESHRUN_KW(in, "in") MESHRUN_KW(out, "out")
MESHRUN_KW(to, "to") MESHRUN_KW(times, "times") MESHRUN_KW(when, "when") MESHRUN_KW(active_low, "active_low")
MESHRUN_KW(initial, "initial") MESHRUN_KW(pull_up, "pull_up") MESHRUN_KW(pull_down, "pull_down")
MESHRUN_KW(debounce, "debounce") MESHRUN_KW(drive, "drive") MESHRUN_KW(advance, "advance")
MESHRUN_KW(expect, "expect") MESHRUN_KW(within, "within") MESHRUN_KW(received, "received")
MESHRUN_KW(logged, "logged") MESHRUN_KW(history, "history")
// `if` and `else` start statements, and are names everywhere else: a pin, a channel or an action
// may be called `if` or `else` (`if = 1` drives a pin; `if` alone on its line runs an action).
MESHRUN_KW(if, "if") MESHRUN_KW(else, "else")
// So are `var` (a node item), `as` (after the delay of `after`) and `cancel` (a statement when a name
// follows it on the line).
MESHRUN_KW(var, "var") MESHRUN_KW(as, "as") MESHRUN_KW(cancel, "cancel")
// Top-level items that are not reserved: a name may be `tls` or `limits` (an item starts with a
// keyword, so at the top level they cannot be taken for a name), and so may `cert`, `key`, `ca`.
MESHRUN_KW(tls, "tls") MESHRUN_KW(limits, "limits") MESHRUN_KW(cert, "cert") MESHRUN_KW(key, "key")
MESHRUN_KW(ca, "ca")
#undef MESHRUN_KW

// A name, read whole in one scan: `[A-Za-z_][A-Za-z0-9_-]*`, not ending in `-`,
// and not a reserved word (a large file has many names; this is the hot rule).
struct name {
    using rule_t = name;
    using subs_t = empty_list;

    static bool is_reserved(std::string_view word) {
        static constexpr std::string_view words[] = {
            "mesh", "include", "secret", "discovery", "node", "test", "pin", "action", "every", "on", "toggle",
            "send", "ack", "log", "after", "repeat", "value", "tick", "random", "not", "and", "or"};
        for (std::string_view w : words)
            if (w.size() == word.size() && w[0] == word[0] && w == word) return true;
        return false;
    }
    static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    }
    // The length of the name at `p`, or 0.
    static std::size_t scan(const char* p, const char* end) {
        if (p == end || !(is_name_char(*p) && !(*p >= '0' && *p <= '9'))) return 0;
        const char* q = p + 1;
        while (q < end) {
            if (is_name_char(*q)) {
                ++q;
                continue;
            }
            const char* r = q;  // dashes belong to the name only when a name character follows
            while (r < end && *r == '-') ++r;
            if (r == q || r == end || !is_name_char(*r)) break;
            q = r;
        }
        return static_cast<std::size_t>(q - p);
    }
    template<typename ParseInput>
    static bool match(ParseInput& in) {
        const std::size_t n = scan(in.current(), in.end());
        if (n == 0 || is_reserved(std::string_view(in.current(), n))) return false;
        in.bump(n);
        return true;
    }
};
// A name followed by `=` (not `==`): an assignment, told apart from a call without a parse-tree node.
struct assignment_ahead {
    using rule_t = assignment_ahead;
    using subs_t = empty_list;
    template<typename ParseInput>
    static bool match(ParseInput& in) {
        const char* p = in.current();
        const char* end = in.end();
        p += name::scan(p, end);
        if (p == in.current()) return false;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) ++p;
        return p < end && *p == '=' && !(p + 1 < end && p[1] == '=');  // at<>: consumes nothing
    }
};

struct integer : plus<digit> {};
struct number : seq<plus<digit>, opt<one<'.'>, plus<digit>>> {};
struct duration_unit : sor<TAO_PEGTL_STRING("us"), TAO_PEGTL_STRING("ms"), one<'s', 'm', 'h'>> {};
struct duration_token : seq<plus<digit>, duration_unit, word_end> {};
// All or nothing, so that an error points at the start of a bad duration.
struct duration : seq<at<duration_token>, duration_token> {};
struct arrow : string<'-', '>'> {};

// ---- strings -------------------------------------------------------------

struct expr;
struct escaped_char : one<'"', '\\', 'n', '{', '}'> {};
struct str_escape : if_must<one<'\\'>, escaped_char> {};
struct str_chars : plus<not_one<'"', '\\', '{', '\n'>> {};
struct interp_expr : seq<expr> {};
struct interp_close : one<'}'> {};
struct str_interp : if_must<one<'{'>, _, interp_expr, _, interp_close> {};
struct string_close : one<'"'> {};
struct string_lit : if_must<one<'"'>, star<sor<peek<not_one<'"', '\\', '{', '\n'>, str_chars>, str_escape,
                                              peek<one<'{'>, str_interp>>>, string_close> {};

// ---- expressions, loosest first: or, and, not, comparison, + -, unary minus

struct paren_close : one<')'> {};
struct random_open : one<'('> {};
struct paren : if_must<one<'('>, _, expr, _, paren_close> {};
struct random_call : if_must<kw_random, _, random_open, _, expr, _, paren_close> {};
struct value_expr : kw_value {};
struct tick_expr : kw_tick {};
struct primary : sor<peek<digit, number>, peek<one<'"'>, string_lit>, peek<one<'('>, paren>,
                     peek<kw_random, random_call>, peek<kw_value, value_expr>, peek<kw_tick, tick_expr>, name> {};
struct minus_op : seq<one<'-'>, not_at<one<'>'>>> {};
struct unary;
struct operand : seq<unary> {};
struct neg_expr : seq<minus_op, _, must<operand>> {};
struct unary : sor<peek<one<'-'>, neg_expr>, primary> {};
struct add_op : sor<one<'+'>, minus_op> {};
struct sum_expr : seq<unary, star<_, peek<one<'+', '-'>, add_op>, _, must<operand>>> {};
struct cmp_op : sor<TAO_PEGTL_STRING("=="), TAO_PEGTL_STRING("!="), TAO_PEGTL_STRING("<="),
                    TAO_PEGTL_STRING(">="), one<'<'>, one<'>'>> {};
struct cmp_rhs : seq<sum_expr> {};
struct cmp_expr : seq<sum_expr, opt<_, peek<one<'=', '!', '<', '>'>, cmp_op>, _, must<cmp_rhs>>> {};
struct not_level;
struct not_operand : seq<not_level> {};
struct not_expr : seq<kw_not, _, must<not_operand>> {};
struct not_level : sor<peek<kw_not, not_expr>, cmp_expr> {};
struct and_rhs : seq<not_level> {};
struct and_op : kw_and {};
struct and_expr : seq<not_level, star<_, peek<kw_and, and_op>, _, must<and_rhs>>> {};
struct or_rhs : seq<and_expr> {};
struct or_op : kw_or {};
struct or_expr : seq<and_expr, star<_, peek<kw_or, or_op>, _, must<or_rhs>>> {};
struct expr : or_expr {};

// ---- statements ----------------------------------------------------------

struct stmt;
struct end_of_item : sor<one<';'>, one<'\n'>, at<one<'}'>>, eof> {};
struct stmt_end : seq<end_of_item> {};
struct block_close : one<'}'> {};
struct block : if_must<one<'{'>, __, star<stmt, _, must<stmt_end>, __>, block_close> {};
struct body : sor<block, stmt> {};
struct arrow_req : arrow {};
struct arrow_body : seq<_, must<arrow_req>, __, must<body>> {};

struct pin_ref : name {};
struct action_ref : name {};
struct node_ref : name {};
struct channel_ref : name {};
struct slash : one<'/'> {};
struct target : seq<node_ref, _, must<slash>, _, must<channel_ref>> {};

struct toggle_stmt : if_must<kw_toggle, _, pin_ref> {};
struct send_value : seq<expr> {};
struct send_stmt : if_must<kw_send, _, send_value, _, kw_to, _, target> {};
struct ack_value : seq<expr> {};
struct ack_stmt : if_must<kw_ack, _, ack_value> {};
struct log_value : seq<expr> {};
struct log_stmt : if_must<kw_log, _, log_value> {};
struct after_delay : duration {};
struct delay_name : name {};
struct after_name : seq<_, kw_as, _, must<delay_name>> {};
struct after_stmt : if_must<kw_after, _, after_delay, opt<after_name>, arrow_body> {};
struct delay_ref : name {};
struct cancel_stmt : if_must<kw_cancel, _, delay_ref> {};
// `cancel` starts a statement when something follows it on the line (else it is a call).
struct cancel_ahead : seq<kw_cancel, _, not_at<end_of_item>> {};
struct repeat_count : integer {};
struct repeat_block : block {};
struct repeat_stmt : if_must<kw_repeat, _, repeat_count, _, repeat_block> {};
struct assign_value : seq<expr> {};
struct assign_target : name {};
struct assign_stmt : seq<assign_target, _, one<'='>, not_at<one<'='>>, _, must<assign_value>> {};
struct call_stmt : action_ref {};

// `if COND { ... } [else if COND { ... }]... [else { ... }]`. `else` may follow the `}` on its
// line, or start the next line (then only as `else {` or `else if`: `else` alone on a line is
// a statement of its own, the call of an action named `else`).
struct if_word : kw_if {};
struct else_word : kw_else {};
struct if_cond : seq<expr> {};
struct if_block : block {};
struct else_block : block {};
struct else_if : if_must<if_word, _, if_cond, _, if_block> {};
struct else_tail : sor<peek<kw_if, else_if>, else_block> {};
struct else_same_line : seq<_, else_word, _, must<else_tail>> {};
struct else_next_line : seq<__, at<kw_else, _, sor<one<'{'>, kw_if>>, else_word, _, must<else_tail>> {};
struct else_clause : sor<else_same_line, else_next_line> {};
struct if_stmt : if_must<if_word, _, if_cond, _, if_block, star<else_clause>> {};
// `if` starts a statement when something follows it on the line (else it is a call).
struct if_ahead : seq<kw_if, _, not_at<end_of_item>> {};
// `else {` or `else if` where a statement starts: no `if` before it.
struct else_ahead : seq<kw_else, _, sor<one<'{'>, kw_if>> {};
struct stray_else : failure {};

struct stmt : sor<peek<kw_toggle, toggle_stmt>, peek<kw_send, send_stmt>, peek<kw_ack, ack_stmt>,
                  peek<kw_log, log_stmt>, peek<kw_after, after_stmt>, peek<kw_repeat, repeat_stmt>,
                  peek<assignment_ahead, assign_stmt>, peek<if_ahead, if_stmt>, peek<else_ahead, stray_else>,
                  peek<cancel_ahead, cancel_stmt>,
                  call_stmt> {};

// ---- node items ----------------------------------------------------------

struct item_end : seq<end_of_item> {};

struct pin_name : name {};
struct pin_eq : one<'='> {};
struct pin_dir : sor<kw_out, kw_in> {};
struct chip_word : plus<sor<alnum, one<'_', '-', '.'>>> {};
struct pin_chip : sor<peek<one<'"'>, string_lit>, chip_word> {};
struct pin_line : sor<peek<digit, integer>, string_lit> {};
struct initial_value : integer {};
struct initial_opt : if_must<kw_initial, _, initial_value> {};
struct debounce_time : duration {};
struct debounce_opt : if_must<kw_debounce, _, debounce_time> {};
struct active_low_opt : kw_active_low {};
struct pull_up_opt : kw_pull_up {};
struct pull_down_opt : kw_pull_down {};
struct pin_option : sor<peek<kw_active_low, active_low_opt>, peek<kw_initial, initial_opt>,
                        peek<kw_pull_up, pull_up_opt>, peek<kw_pull_down, pull_down_opt>,
                        peek<kw_debounce, debounce_opt>> {};
struct pin_end : at<end_of_item> {};
struct pin_decl : if_must<kw_pin, _, pin_name, _, pin_eq, _, pin_dir, _, pin_chip, _, pin_line,
                          star<_, pin_option>, _, pin_end> {};

// `var NAME = LITERAL`: a number (`0`, `-1.5`) or a string without interpolation.
struct var_name : name {};
struct var_eq : one<'='> {};
struct var_value : sor<seq<opt<one<'-'>>, number>, string_lit> {};
struct var_decl : if_must<kw_var, _, var_name, _, var_eq, _, var_value> {};

struct action_name : name {};
struct action_def : sor<block, seq<arrow, __, must<body>>> {};
struct action_decl : if_must<kw_action, _, action_name, _, action_def> {};

struct every_period : duration {};
struct times_count : integer {};
struct times_clause : seq<times_count, _, must<kw_times>> {};
struct every_decl : if_must<kw_every, _, every_period, _, opt<peek<digit, times_clause>, _>, arrow_body> {};

struct on_source : name {};
struct on_pattern : sor<seq<opt<one<'-'>>, number>, string_lit> {};
struct guard : seq<expr> {};
struct when_clause : if_must<kw_when, _, guard> {};
struct on_decl : if_must<kw_on, _, on_source, _, opt<peek<sor<digit, seq<one<'-'>, digit>, one<'"'>>, on_pattern>, _>, opt<when_clause, _>, arrow_body> {};

struct node_item : sor<peek<kw_on, on_decl>, peek<kw_pin, pin_decl>, peek<kw_action, action_decl>,
                       peek<kw_every, every_decl>, peek<kw_var, var_decl>> {};

// ---- top level -----------------------------------------------------------

struct node_name : name {};
struct host_v6 : plus<sor<xdigit, one<':', '.', '%'>>> {};
struct v6_close : one<']'> {};
struct host_name : plus<sor<alnum, one<'-', '.', '_'>>> {};
struct host : sor<if_must<one<'['>, host_v6, v6_close>, host_name> {};
struct port : integer {};
struct address_body : sor<seq<one<':'>, must<port>>, seq<host, opt<one<':'>, must<port>>>> {};
struct address : if_must<kw_at, _, address_body> {};
struct node_open : one<'{'> {};
struct node_close : one<'}'> {};
struct node_decl : if_must<kw_node, _, node_name, _, opt<peek<kw_at, address>, _>, node_open, __,
                           star<node_item, _, must<item_end>, __>, node_close> {};

struct level : seq<expr> {};
struct expect_text : seq<expr> {};
struct t_send : if_must<kw_send, _, send_value, _, kw_to, _, target,
                        opt<_, kw_expect, _, must<expect_text>>> {};
struct dot : one<'.'> {};
struct drive_eq : one<'='> {};
struct t_drive : if_must<kw_drive, _, node_ref, _, dot, _, pin_ref, _, drive_eq, _, level> {};
struct advance_time : duration {};
struct t_advance : if_must<kw_advance, _, advance_time> {};
struct pin_cmp : sor<TAO_PEGTL_STRING("=="), TAO_PEGTL_STRING("!=")> {};
struct within_time : duration {};
struct history_text : string_lit {};
struct pin_expect : sor<seq<pin_cmp, _, must<level>, opt<_, kw_within, _, must<within_time>>>,
                        seq<kw_history, _, must<history_text>>> {};
struct expect_pin : seq<one<'.'>, _, must<pin_ref>, _, must<pin_expect>> {};
struct expect_logged : seq<kw_logged, _, must<expect_text>> {};
struct received_count : integer {};
struct received_on : kw<TAO_PEGTL_STRING("on")> {};
struct expect_received : seq<kw_received, _, must<received_count>, _, must<received_on>, _, must<channel_ref>> {};
struct expect_what : sor<peek<one<'.'>, expect_pin>, peek<kw_logged, expect_logged>, expect_received> {};
struct t_expect : if_must<kw_expect, _, node_ref, _, expect_what> {};
struct test_stmt : sor<peek<kw_send, t_send>, peek<kw_drive, t_drive>, peek<kw_advance, t_advance>,
                       peek<kw_expect, t_expect>> {};
struct test_title : string_lit {};
struct test_open : one<'{'> {};
struct test_close : one<'}'> {};
struct test_decl : if_must<kw_test, _, test_title, _, test_open, __,
                           star<test_stmt, _, must<stmt_end>, __>, test_close> {};

struct mesh_name : name {};
struct mesh_decl : if_must<kw_mesh, _, mesh_name> {};
struct include_path : string_lit {};
struct include_decl : if_must<kw_include, _, include_path> {};
struct env_var : seq<identifier_first, star<identifier_other>> {};
struct secret_decl : if_must<kw_secret, _, kw_env, _, env_var> {};
struct discovery_url : string_lit {};
struct discovery_decl : if_must<kw_discovery, _, kw_etcd, _, discovery_url> {};

// `tls cert "FILE" key "FILE" [ca "FILE"]`: the options in any order; the checker finds a
// missing or repeated one.
struct cert_file : string_lit {};
struct key_file : string_lit {};
struct ca_file : string_lit {};
struct tls_cert : if_must<kw_cert, _, cert_file> {};
struct tls_key : if_must<kw_key, _, key_file> {};
struct tls_ca : if_must<kw_ca, _, ca_file> {};
struct tls_option : sor<peek<kw_cert, tls_cert>, peek<kw_key, tls_key>, peek<kw_ca, tls_ca>> {};
struct tls_first : seq<tls_option> {};
struct tls_end : at<sor<one<';'>, one<'\n'>, eof>> {};
struct tls_decl : if_must<kw_tls, _, tls_first, star<_, tls_option>> {};
struct tls_item : seq<tls_decl, _, tls_end> {};  // the item's span ends at its last file

// `limits { NAME VALUE ... }`, one limit a line (or `;` between them). A value is a whole number
// and the letters after it, read whole: the checker says which unit each limit takes, and what
// is wrong with `64KB` or `message 5s`.
//
// A limit's name: any word read as a name is, reserved or not (the checker says which limits
// there are, and that `on` is none of them).
struct limit_name {
    using rule_t = limit_name;
    using subs_t = empty_list;
    template<typename ParseInput>
    static bool match(ParseInput& in) {
        const std::size_t n = name::scan(in.current(), in.end());
        if (n == 0) return false;
        in.bump(n);
        return true;
    }
};
struct limit_token : seq<plus<digit>, star<alpha>, word_end> {};
// All or nothing, so that an error points at the start of a bad value.
struct limit_value : seq<at<limit_token>, limit_token> {};
struct limit : seq<limit_name, _, must<limit_value>> {};
struct limit_end : seq<end_of_item> {};
struct limits_open : one<'{'> {};
struct limits_close : one<'}'> {};
struct limits_decl : if_must<kw_limits, _, limits_open, __, star<limit, _, must<limit_end>, __>, limits_close> {};

struct top_end : sor<one<';'>, one<'\n'>, eof> {};
struct top_item : sor<peek<kw_node, node_decl>, peek<kw_test, test_decl>, peek<kw_mesh, mesh_decl>,
                      peek<kw_include, include_decl>, peek<kw_secret, secret_decl>,
                      peek<kw_discovery, discovery_decl>, peek<kw_tls, tls_item>,
                      peek<kw_limits, limits_decl>> {};
// The parser reads one top-level item at a time, so that one syntax error
// costs one item and the rest of the file is still read.
struct top_entry : seq<top_item, _, must<top_end>> {};

// The whole language, for pegtl::analyze (the parser drives top_entry itself).
struct file : seq<__, star<top_entry, __>, eof> {};

// ---- what a failed `must` says -------------------------------------------

template<typename Rule> inline constexpr const char* message = nullptr;
#define MESHRUN_MSG(rule, text) template<> inline constexpr const char* message<rule> = text;
MESHRUN_MSG(escaped_char, "the escapes are `\\\"`, `\\\\`, `\\n`, `\\{` and `\\}`")
MESHRUN_MSG(interp_expr, "expected an expression after `{` in the string")
MESHRUN_MSG(interp_close, "expected `}` to close the interpolation")
MESHRUN_MSG(string_close, "expected `\"` to close the string")
MESHRUN_MSG(random_open, "expected `(` after `random`")
MESHRUN_MSG(paren_close, "expected `)`")
MESHRUN_MSG(operand, "expected an expression after the operator")
MESHRUN_MSG(cmp_rhs, "expected an expression after the comparison")
MESHRUN_MSG(not_operand, "expected an expression after `not`")
MESHRUN_MSG(and_rhs, "expected an expression after `and`")
MESHRUN_MSG(or_rhs, "expected an expression after `or`")
MESHRUN_MSG(stmt_end, "expected a newline or `;` after the statement")
MESHRUN_MSG(block_close, "expected a statement or `}`")
MESHRUN_MSG(arrow_req, "expected `->`")
MESHRUN_MSG(body, "expected a statement or `{` after `->`")
MESHRUN_MSG(slash, "expected `/` between node and channel, as in `buzzer/signal`")
MESHRUN_MSG(channel_ref, "expected a channel name after `/`")
MESHRUN_MSG(pin_ref, "expected a pin name")
MESHRUN_MSG(target, "expected a target such as `buzzer/signal` after `to`")
MESHRUN_MSG(send_value, "expected a value to send after `send`")
MESHRUN_MSG(kw_to, "expected `to` after the value to send")
MESHRUN_MSG(ack_value, "expected a value after `ack`")
MESHRUN_MSG(log_value, "expected a message after `log`, as in `log \"text {value}\"`")
MESHRUN_MSG(after_delay, "expected a duration such as `250ms` or `2s` after `after`")
MESHRUN_MSG(delay_name, "expected a name for the delay after `as`, as in `after 5m as lights_off -> lamp = 0`")
MESHRUN_MSG(delay_ref, "expected the name of a delay after `cancel`, as in `cancel lights_off`")
MESHRUN_MSG(repeat_count, "expected a whole number after `repeat`")
MESHRUN_MSG(repeat_block, "expected `{` after the count")
MESHRUN_MSG(assign_value, "expected a value after `=`")
MESHRUN_MSG(if_cond, "expected a condition after `if`, as in `if lamp == 1 { ... }`")
MESHRUN_MSG(if_block, "expected `{` after the condition of `if`")
MESHRUN_MSG(else_tail, "expected `{` or `if` after `else`")
MESHRUN_MSG(stray_else, "expected a statement (`else` goes after the `}` of an `if`)")
MESHRUN_MSG(item_end, "expected a newline or `;` after the item")
MESHRUN_MSG(pin_name, "expected a pin name after `pin`")
MESHRUN_MSG(pin_eq, "expected `=` after the pin name")
MESHRUN_MSG(pin_dir, "expected `in` or `out`")
MESHRUN_MSG(pin_chip, "expected a chip, as in `gpiochip0` or a label in quotes")
MESHRUN_MSG(pin_line, "expected a line offset or a line name in quotes, as in `17` or `\"GPIO17\"`")
MESHRUN_MSG(initial_value, "expected `0` or `1` after `initial`")
MESHRUN_MSG(debounce_time, "expected a duration such as `20ms` after `debounce`")
MESHRUN_MSG(pin_end, "expected a pin option (`active_low`, `initial`, `pull_up`, `pull_down`, `debounce`) or the end of the line")
MESHRUN_MSG(var_name, "expected a variable name after `var`")
MESHRUN_MSG(var_eq, "expected `=` after the variable name, as in `var visits = 0`")
MESHRUN_MSG(var_value, "expected a number or a string in quotes after `=`: a variable starts as a literal")
MESHRUN_MSG(action_name, "expected an action name after `action`")
MESHRUN_MSG(action_def, "expected `{` or `->` after the action name")
MESHRUN_MSG(every_period, "expected a duration such as `1s` or `250ms` after `every`")
MESHRUN_MSG(kw_times, "expected `times` after the count")
MESHRUN_MSG(on_source, "expected a channel or pin name after `on`")
MESHRUN_MSG(guard, "expected a condition after `when`")
MESHRUN_MSG(node_name, "expected a node name after `node`")
MESHRUN_MSG(host_v6, "expected an IPv6 address after `[`")
MESHRUN_MSG(v6_close, "expected `]` after the IPv6 address")
MESHRUN_MSG(port, "expected a port number after `:`")
MESHRUN_MSG(address_body, "expected a host or `:PORT` after `at`, as in `at localhost:8765`")
MESHRUN_MSG(node_open, "expected `{` after the node name (or `at HOST:PORT`)")
MESHRUN_MSG(node_close, "expected `pin`, `var`, `action`, `every`, `on` or `}`")
MESHRUN_MSG(level, "expected a level, `0` or `1`")
MESHRUN_MSG(expect_text, "expected the acknowledgement text after `expect`")
MESHRUN_MSG(node_ref, "expected a node name")
MESHRUN_MSG(dot, "expected `.` between node and pin, as in `buzzer.horn`")
MESHRUN_MSG(drive_eq, "expected `=` after the pin")
MESHRUN_MSG(advance_time, "expected a duration such as `5s` after `advance`")
MESHRUN_MSG(pin_expect, "expected `==`, `!=` or `history` after the pin")
MESHRUN_MSG(history_text, "expected the levels in quotes after `history`, as in `\"1 0 1\"`")
MESHRUN_MSG(within_time, "expected a duration after `within`")
MESHRUN_MSG(received_count, "expected a count after `received`")
MESHRUN_MSG(received_on, "expected `on CHANNEL` after the count")
MESHRUN_MSG(expect_what, "expected `.PIN == LEVEL`, `.PIN history \"1 0\"`, `received N on CHANNEL` or `logged \"TEXT\"` after the node")
MESHRUN_MSG(test_title, "expected a title in quotes after `test`")
MESHRUN_MSG(test_open, "expected `{` after the test title")
MESHRUN_MSG(test_close, "expected `send`, `drive`, `advance`, `expect` or `}`")
MESHRUN_MSG(mesh_name, "expected a name after `mesh`")
MESHRUN_MSG(include_path, "expected a path in quotes after `include`")
MESHRUN_MSG(kw_env, "expected `env` after `secret`, as in `secret env MESH_TOKEN`")
MESHRUN_MSG(env_var, "expected an environment variable name")
MESHRUN_MSG(kw_etcd, "expected `etcd` after `discovery`")
MESHRUN_MSG(discovery_url, "expected a URL in quotes, as in `\"http://127.0.0.1:2379\"`")
MESHRUN_MSG(cert_file, "expected the certificate's file in quotes after `cert`, as in `cert \"node.crt\"`")
MESHRUN_MSG(key_file, "expected the private key's file in quotes after `key`, as in `key \"node.key\"`")
MESHRUN_MSG(ca_file, "expected the authority's certificate file in quotes after `ca`, as in `ca \"fleet-ca.crt\"`")
MESHRUN_MSG(tls_first, "expected `cert \"FILE\"`, `key \"FILE\"` or `ca \"FILE\"` after `tls`")
MESHRUN_MSG(tls_end, "expected `cert`, `key`, `ca` or the end of the line")
MESHRUN_MSG(limits_open, "expected `{` after `limits`")
MESHRUN_MSG(limit_value, "expected a value after the limit's name, such as `64KiB`, `1024` or `5s`")
MESHRUN_MSG(limit_end, "expected a newline or `;` after the limit")
MESHRUN_MSG(limits_close, "expected a limit, such as `message 64KiB`, or `}`")
MESHRUN_MSG(top_end, "expected a newline or `;` after the item")
#undef MESHRUN_MSG

// clang-format on

}  // namespace meshrun::dsl::grammar

template<typename Name>
struct tao::pegtl::analyze_traits<Name, meshrun::dsl::grammar::name> : analyze_any_traits<> {};
template<typename Name>
struct tao::pegtl::analyze_traits<Name, meshrun::dsl::grammar::assignment_ahead> : analyze_opt_traits<> {};
template<typename Name>
struct tao::pegtl::analyze_traits<Name, meshrun::dsl::grammar::limit_name> : analyze_any_traits<> {};
