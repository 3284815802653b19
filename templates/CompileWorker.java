// CompileWorker.java: the warm compile worker of jetstart-rs. `jetstart-rs dev` writes it to a
// private temporary folder and runs it with the JDK's single-file source launcher:
//
//   java -Xmx<heap> CompileWorker.java --compiler <classpath> [--d8 <d8.jar>]
//
// It loads the Kotlin compiler (K2JVMCompiler) and D8 once, each in a class loader of its own, and
// then serves requests: one JSON object per line on stdin, one answer per line on stdout. Warm, a
// compile takes a fraction of a fresh `kotlinc` process. Only public entry points are used:
// CLITool.exec(PrintStream, String...) of the Kotlin compiler, and D8Command.parse(String[],
// Origin) with D8.run(D8Command), as the SDK's d8 script runs D8.
//
// Request:  {"id":1,"kotlinArgs":[…, "-d", "<classes>", "<file.kt>"…],"classes":"<dir>",
//            "d8Args":[…],"dex":"<dir>"}
// Answer:   {"id":1,"ok":true,"compileMs":120,"dexMs":30,"classNames":["a.B"…]}
//       or  {"id":1,"ok":false,"stage":"compile"|"dex"|"request","error":"<first line>",
//            "diagnostics":[{"severity":"error","file":"…","line":3,"column":5,"message":"…"}…],
//            "output":"<all compiler output>"}
// The first line written is {"ready":true} once both tools are loaded. stdin closing (the server
// gone) ends the worker. Everything else the tools print goes to stderr, never to stdout.

import java.io.*;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

public class CompileWorker {
    /** A compiler message as the CLI renders it: `path:line:column: severity: message`. */
    private static final Pattern DIAGNOSTIC =
        Pattern.compile("^(.*?):(\\d+):(\\d+): (error|warning|info|exception): (.*)$");
    /** A message without a location: `error: message`. */
    private static final Pattern BARE = Pattern.compile("^(error|warning|exception): (.*)$");

    private final ClassLoader kotlinLoader;
    private final Class<?> kotlinCompiler;
    private final Method exec;
    private final ClassLoader d8Loader;

    private CompileWorker(String compilerClasspath, String d8Jar) throws Exception {
        ClassLoader parent = ClassLoader.getPlatformClassLoader();
        kotlinLoader = new URLClassLoader(urls(compilerClasspath), parent);
        kotlinCompiler = kotlinLoader.loadClass("org.jetbrains.kotlin.cli.jvm.K2JVMCompiler");
        exec = kotlinCompiler.getMethod("exec", PrintStream.class, String[].class);
        d8Loader = d8Jar == null ? null : new URLClassLoader(urls(d8Jar), parent);
    }

    public static void main(String[] args) throws Exception {
        // stdout carries the protocol alone: whatever the tools print goes to stderr.
        PrintStream protocol = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        System.setOut(System.err);
        String compiler = option(args, "--compiler");
        if (compiler == null) {
            System.err.println("usage: CompileWorker.java --compiler <classpath> [--d8 <d8.jar>]");
            System.exit(2);
        }
        CompileWorker worker = new CompileWorker(compiler, option(args, "--d8"));
        protocol.println("{\"ready\":true}");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isBlank()) {
                continue;
            }
            String answer;
            try {
                answer = worker.handle(Json.object(line));
            } catch (VirtualMachineError e) {
                // Out of memory (or worse): say so, then exit so that the server starts a new one.
                protocol.println(failure(-1, "request", "the compile worker ran out of memory: " + e, List.of(), ""));
                System.exit(3);
                return;
            } catch (Exception e) {
                answer = failure(-1, "request", "bad request: " + e, List.of(), "");
            }
            protocol.println(answer);
        }
    }

    private String handle(Map<String, Object> request) throws Exception {
        long id = ((Number) request.getOrDefault("id", -1L)).longValue();
        Path classes = Paths.get((String) request.get("classes"));
        Path dex = Paths.get((String) request.get("dex"));

        long started = System.nanoTime();
        ByteArrayOutputStream messages = new ByteArrayOutputStream();
        Object exitCode;
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(kotlinLoader);
        try (PrintStream err = new PrintStream(messages, true, "UTF-8")) {
            Object compiler = kotlinCompiler.getConstructor().newInstance();
            exitCode = exec.invoke(compiler, err, (Object) strings(request.get("kotlinArgs")));
        } catch (InvocationTargetException e) {
            return failure(id, "compile", "the Kotlin compiler crashed: " + e.getCause(), List.of(),
                messages.toString(StandardCharsets.UTF_8));
        } finally {
            thread.setContextClassLoader(previous);
        }
        String output = messages.toString(StandardCharsets.UTF_8);
        List<Map<String, Object>> diagnostics = diagnostics(output);
        if (!"OK".equals(String.valueOf(exitCode))) {
            String first = diagnostics.stream()
                .filter(d -> !"warning".equals(d.get("severity")) && !"info".equals(d.get("severity")))
                .findFirst().map(CompileWorker::render).orElse("the Kotlin compiler failed (" + exitCode + ")");
            return failure(id, "compile", first, diagnostics, output);
        }
        long compiled = System.nanoTime();

        List<String> classFiles = classFiles(classes);
        if (classFiles.isEmpty()) {
            return failure(id, "compile", "the Kotlin compiler produced no class files", diagnostics, output);
        }
        if (d8Loader == null) {
            return failure(id, "dex", "no d8.jar was given to the worker", diagnostics, output);
        }
        List<String> d8Args = new ArrayList<>(Arrays.asList(strings(request.get("d8Args"))));
        d8Args.add("--output");
        d8Args.add(dex.toString());
        d8Args.addAll(classFiles);
        thread.setContextClassLoader(d8Loader);
        try {
            Class<?> d8 = d8Loader.loadClass("com.android.tools.r8.D8");
            Class<?> command = d8Loader.loadClass("com.android.tools.r8.D8Command");
            Class<?> origin = d8Loader.loadClass("com.android.tools.r8.origin.Origin");
            Object builder = command.getMethod("parse", String[].class, origin)
                .invoke(null, d8Args.toArray(new String[0]), origin.getMethod("root").invoke(null));
            Object built = builder.getClass().getMethod("build").invoke(builder);
            d8.getMethod("run", command).invoke(null, built);
        } catch (InvocationTargetException e) {
            return failure(id, "dex", "d8 failed: " + e.getCause(), diagnostics, output);
        } finally {
            thread.setContextClassLoader(previous);
        }
        long dexed = System.nanoTime();

        StringBuilder out = new StringBuilder("{\"id\":").append(id).append(",\"ok\":true");
        out.append(",\"compileMs\":").append((compiled - started) / 1_000_000);
        out.append(",\"dexMs\":").append((dexed - compiled) / 1_000_000);
        out.append(",\"classNames\":[");
        for (int i = 0; i < classFiles.size(); i++) {
            String rel = classes.relativize(Paths.get(classFiles.get(i))).toString();
            String name = rel.substring(0, rel.length() - ".class".length()).replace(File.separatorChar, '.');
            out.append(i == 0 ? "" : ",").append(Json.quote(name));
        }
        out.append("],\"diagnostics\":").append(Json.list(diagnostics)).append('}');
        return out.toString();
    }

    /** The compiler's messages, one per rendered message line (source excerpts skipped). */
    static List<Map<String, Object>> diagnostics(String output) {
        List<Map<String, Object>> found = new ArrayList<>();
        for (String line : output.split("\\R")) {
            Matcher m = DIAGNOSTIC.matcher(line);
            Map<String, Object> d = new LinkedHashMap<>();
            if (m.matches()) {
                d.put("severity", m.group(4));
                d.put("file", m.group(1));
                d.put("line", Long.parseLong(m.group(2)));
                d.put("column", Long.parseLong(m.group(3)));
                d.put("message", m.group(5));
            } else {
                Matcher bare = BARE.matcher(line);
                if (!bare.matches()) {
                    continue;
                }
                d.put("severity", bare.group(1));
                d.put("message", bare.group(2));
            }
            found.add(d);
        }
        return found;
    }

    private static String render(Map<String, Object> d) {
        if (!d.containsKey("file")) {
            return d.get("severity") + ": " + d.get("message");
        }
        return d.get("file") + ":" + d.get("line") + ":" + d.get("column") + ": " + d.get("severity") + ": "
            + d.get("message");
    }

    private static String failure(long id, String stage, String error, List<Map<String, Object>> diagnostics,
                                  String output) {
        return "{\"id\":" + id + ",\"ok\":false,\"stage\":" + Json.quote(stage) + ",\"error\":" + Json.quote(error)
            + ",\"diagnostics\":" + Json.list(diagnostics) + ",\"output\":" + Json.quote(output) + "}";
    }

    private static List<String> classFiles(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            return walk.filter(p -> p.toString().endsWith(".class"))
                .filter(p -> !dir.relativize(p).startsWith("META-INF"))
                .map(Path::toString).sorted().collect(java.util.stream.Collectors.toList());
        }
    }

    private static URL[] urls(String classpath) throws IOException {
        List<URL> urls = new ArrayList<>();
        for (String entry : classpath.split(File.pathSeparator)) {
            if (!entry.isEmpty()) {
                urls.add(Paths.get(entry).toUri().toURL());
            }
        }
        return urls.toArray(new URL[0]);
    }

    private static String[] strings(Object list) {
        List<?> items = list == null ? List.of() : (List<?>) list;
        String[] out = new String[items.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (String) items.get(i);
        }
        return out;
    }

    private static String option(String[] args, String name) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        return null;
    }

    /** Just enough JSON for the protocol: objects, arrays, strings, numbers, booleans, null. */
    static final class Json {
        private final String text;
        private int at;

        private Json(String text) {
            this.text = text;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(String text) {
            Json json = new Json(text);
            Object value = json.value();
            json.space();
            if (!(value instanceof Map) || json.at != text.length()) {
                throw new IllegalArgumentException("not one JSON object");
            }
            return (Map<String, Object>) value;
        }

        private Object value() {
            space();
            if (at >= text.length()) {
                throw new IllegalArgumentException("unexpected end");
            }
            char c = text.charAt(at);
            switch (c) {
                case '{': {
                    at++;
                    Map<String, Object> map = new LinkedHashMap<>();
                    space();
                    if (peek('}')) {
                        return map;
                    }
                    do {
                        space();
                        String key = string();
                        space();
                        expect(':');
                        map.put(key, value());
                        space();
                    } while (peek(','));
                    expect('}');
                    return map;
                }
                case '[': {
                    at++;
                    List<Object> list = new ArrayList<>();
                    space();
                    if (peek(']')) {
                        return list;
                    }
                    do {
                        list.add(value());
                        space();
                    } while (peek(','));
                    expect(']');
                    return list;
                }
                case '"':
                    return string();
                default:
                    int start = at;
                    while (at < text.length() && "{}[],: \t\r\n".indexOf(text.charAt(at)) < 0) {
                        at++;
                    }
                    String word = text.substring(start, at);
                    switch (word) {
                        case "true": return Boolean.TRUE;
                        case "false": return Boolean.FALSE;
                        case "null": return null;
                        default:
                            return word.contains(".") || word.contains("e") || word.contains("E")
                                ? (Object) Double.parseDouble(word) : (Object) Long.parseLong(word);
                    }
            }
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char e = text.charAt(at++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 'r': out.append('\r'); break;
                    case 't': out.append('\t'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u': out.append((char) Integer.parseInt(text.substring(at, at + 4), 16)); at += 4; break;
                    default: out.append(e);
                }
            }
        }

        private void space() {
            while (at < text.length() && Character.isWhitespace(text.charAt(at))) {
                at++;
            }
        }

        private boolean peek(char c) {
            if (at < text.length() && text.charAt(at) == c) {
                at++;
                return true;
            }
            return false;
        }

        private void expect(char c) {
            if (!peek(c)) {
                throw new IllegalArgumentException("expected '" + c + "' at " + at);
            }
        }

        static String quote(String s) {
            StringBuilder out = new StringBuilder("\"");
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"': out.append("\\\""); break;
                    case '\\': out.append("\\\\"); break;
                    case '\n': out.append("\\n"); break;
                    case '\r': out.append("\\r"); break;
                    case '\t': out.append("\\t"); break;
                    default:
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                }
            }
            return out.append('"').toString();
        }

        static String list(List<Map<String, Object>> items) {
            StringBuilder out = new StringBuilder("[");
            for (int i = 0; i < items.size(); i++) {
                out.append(i == 0 ? "{" : ",{");
                int n = 0;
                for (Map.Entry<String, Object> e : items.get(i).entrySet()) {
                    out.append(n++ == 0 ? "" : ",").append(quote(e.getKey())).append(':');
                    Object v = e.getValue();
                    out.append(v instanceof String ? quote((String) v) : String.valueOf(v));
                }
                out.append('}');
            }
            return out.append(']').toString();
        }
    }
}
