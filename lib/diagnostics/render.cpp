// Rendering DOT text in-process with Graphviz (libgvc + libcgraph). Kept apart from the DOT
// writer so that only this file sees Graphviz's C headers.
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include "deltagraph/diagnostics/dot.h"

namespace dg {

namespace {

// Graphviz keeps global state (the parser, the error handler), so calls are serialised.
std::mutex& graphviz_mutex() {
  static std::mutex m;
  return m;
}

// Messages Graphviz reports while the mutex is held; its error callback has no user pointer.
std::string& graphviz_messages() {
  static std::string messages;
  return messages;
}

int collect_graphviz_message(char* message) {
  graphviz_messages() += message;
  return 0;
}

// One context for the whole process, created on first use and never freed: Graphviz 2.43's
// text-layout plugin keeps a pointer to the last font name it measured, which lives in the
// context, so freeing a context and making another reads freed memory on the next render.
GVC_t* graphviz_context() {
  static GVC_t* context = gvContext();
  return context;
}

// Holds the lock, and restores Graphviz's error handler and frees the graph and its layout, on
// every path out.
class GraphvizSession {
 public:
  GraphvizSession() : lock_(graphviz_mutex()) {
    graphviz_messages().clear();
    previous_handler_ = agseterrf(collect_graphviz_message);
    context_ = graphviz_context();
  }
  ~GraphvizSession() {
    if (graph_) {
      if (laid_out_) gvFreeLayout(context_, graph_);
      agclose(graph_);
    }
    agseterrf(previous_handler_);
  }
  GraphvizSession(const GraphvizSession&) = delete;
  GraphvizSession& operator=(const GraphvizSession&) = delete;

  GVC_t* context_ = nullptr;
  Agraph_t* graph_ = nullptr;
  bool laid_out_ = false;

 private:
  std::lock_guard<std::mutex> lock_;
  agusererrf previous_handler_ = nullptr;
};

// ---- parsing with deterministic object IDs -------------------------------------------------
//
// cgraph's default ID discipline uses the address of each name's interned string as the
// object's ID and keeps subgraphs ordered by ID, and the dot layout visits clusters in that
// order. Once a process has freed some strings, new ones land at arbitrary addresses, so the
// same DOT text rendered twice gave two different pictures. These IDs follow the order in which
// names first appear instead: even numbers for named objects, odd ones for anonymous objects
// (as cgraph's own discipline, whose other parts rely on that split).

struct NameIds {
  std::unordered_map<std::string, IDTYPE> ids;
  std::deque<std::string> names;  // names[k] has ID 2(k+1); a deque never moves its strings
  IDTYPE next_anonymous = 1;
};

void* name_ids_open(Agraph_t*, Agdisc_t*) { return new NameIds; }

long name_ids_map(void* state, int, char* name, IDTYPE* id, int create) {
  auto* ids = static_cast<NameIds*>(state);
  if (!name) {
    *id = ids->next_anonymous;
    ids->next_anonymous += 2;
    return 1;
  }
  if (auto it = ids->ids.find(name); it != ids->ids.end()) {
    *id = it->second;
    return 1;
  }
  if (!create) return 0;
  ids->names.emplace_back(name);
  *id = 2 * static_cast<IDTYPE>(ids->names.size());
  ids->ids.emplace(ids->names.back(), *id);
  return 1;
}

// A client may ask for a specific ID only in the named (even) range, as with cgraph's default.
long name_ids_alloc(void*, int, IDTYPE request) { return (request & 1) ? 0 : 1; }

void name_ids_free(void*, int, IDTYPE) {}  // names live as long as the graph

char* name_ids_print(void* state, int, IDTYPE id) {
  auto* ids = static_cast<NameIds*>(state);
  if (id == 0 || id % 2 != 0 || id / 2 > ids->names.size()) return nullptr;
  return ids->names[id / 2 - 1].data();
}

void name_ids_close(void* state) { delete static_cast<NameIds*>(state); }

void name_ids_register(void*, int, void*) {}

Agiddisc_t name_id_discipline = {name_ids_open,  name_ids_map,   name_ids_alloc,   name_ids_free,
                                 name_ids_print, name_ids_close, name_ids_register};

// Reads from a string one line at a time, as agmemread does (its reader is not exported).
struct TextReader {
  const std::string& text;
  size_t position = 0;
};

int read_text(void* channel, char* buffer, int size) {
  auto* reader = static_cast<TextReader*>(channel);
  int copied = 0;
  while (copied < size && reader->position < reader->text.size()) {
    const char c = reader->text[reader->position++];
    buffer[copied++] = c;
    if (c == '\n') break;
  }
  return copied;
}

Agraph_t* parse_dot(const std::string& text) {
  // The graph keeps pointers to its disciplines, so they must outlive it.
  static Agiodisc_t io = [] {
    Agiodisc_t d = AgIoDisc;
    d.afread = read_text;
    return d;
  }();
  Agdisc_t discipline{&AgMemDisc, &name_id_discipline, &io};
  TextReader reader{text};
  return agread(&reader, &discipline);
}

// Graphviz's own words, trimmed, for an error message ("" if it said nothing).
std::string graphviz_said() {
  std::string text = graphviz_messages();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text.empty() ? "" : " (Graphviz: " + text + ")";
}

}  // namespace

// Note: Graphviz 2.43's dot layout itself leaks a little memory on every layout (tens of KB for
// the demo's graph, in mincross and HTML-label sizing, per valgrind); gvFreeLayout does not
// reach it. Rendering is for people looking at graphs, not an inner loop.
std::string render_dot(const std::string& dot_text, const std::string& format) {
  if (format != "svg" && format != "png")
    fail("render_dot: unsupported format '{}'; use \"svg\" or \"png\"", format);
  GraphvizSession session;
  if (!session.context_) fail("render_dot: Graphviz could not create a context{}", graphviz_said());
  session.graph_ = parse_dot(dot_text);
  if (!session.graph_) fail("render_dot: Graphviz could not parse the DOT text{}", graphviz_said());
  if (gvLayout(session.context_, session.graph_, "dot") != 0)
    fail("render_dot: the Graphviz 'dot' layout failed{}", graphviz_said());
  session.laid_out_ = true;
  char* data = nullptr;
  unsigned int length = 0;
  if (gvRenderData(session.context_, session.graph_, format.c_str(), &data, &length) != 0 ||
      !data) {
    if (data) gvFreeRenderData(data);
    fail(
        "render_dot: Graphviz could not render {} (is its {} plugin installed? `dot -T{}` should "
        "work){}",
        format, format, format, graphviz_said());
  }
  std::string bytes(data, length);
  gvFreeRenderData(data);
  return bytes;
}

}  // namespace dg
