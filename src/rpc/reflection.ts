import { toBinary, type DescFile, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import type { Server } from '@grpc/grpc-js';
import { protoPath as healthProtoPath } from 'grpc-health-check';

function collectFiles(file: DescFile, into: Map<string, DescFile>): void {
  if (into.has(file.name)) return;
  into.set(file.name, file);
  for (const dep of file.dependencies) collectFiles(dep, into);
}

/**
 * Server reflection (v1 and v1alpha) for our services and the health service, so grpcurl
 * needs no .proto files. Our descriptors come from the generated code itself, never out of
 * step with what is served.
 */
export function addReflection(server: Server, services: DescService[]): void {
  const files = new Map<string, DescFile>();
  for (const s of services) collectFiles(s.file, files);
  const ours = [...files.values()].map((f) =>
    Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)),
  );
  const pkg: PackageDefinition = {
    ...loadSync(healthProtoPath),
    ...Object.fromEntries(
      services.map((s) => [s.typeName, { fileDescriptorProtos: ours } as never]),
    ),
  };
  new ReflectionService(pkg).addToServer(server);
}
